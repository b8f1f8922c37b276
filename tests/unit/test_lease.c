/* test_lease.c — the lease arithmetic of lease.h (majority time, stale_after, the leader's
 * judgement) and a simulation of the voter-granted lease protocol as src/agent/agent.c runs it, on
 * random schedules: clocks at two rates each within the drift allowance, message delays and
 * loss, partitions, leader changes. The property: when the leader releases a holder's role for an
 * expired lease, every lease the holder got from grants made while the voters still saw that role
 * has ended in real time. Deliberately unsafe variants must break it, so the check is not
 * vacuous. Two holes of agent.c (a holder that gets a role again; a voter that restarts) are
 * reproduced, with the rule that closes each; see test_sim_reassign and test_sim_restarts.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "core/lease.h"

static us_timing profile(const char *name)
{
    us_timing t;
    memset(&t, 0, sizeof t);
    assert_int_equal(us_timing_profile(name, &t), 0);
    return t;
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

static double unif_in(double lo, double hi)
{
    return lo + (hi - lo) * unif();
}

static int64_t rnd_range(int64_t lo, int64_t hi) /* inclusive */
{
    return lo + (int64_t)(rnd() % (uint64_t)(hi - lo + 1));
}

/* ---- us_lease_majority_time ---- */

static void test_majority_time_small(void **state)
{
    (void)state;
    int64_t one[] = {500};
    assert_int_equal(us_lease_majority_time(one, 1), 500);
    int64_t one_zero[] = {0}; /* time 0 is a time */
    assert_int_equal(us_lease_majority_time(one_zero, 1), 0);
    int64_t one_never[] = {-1};
    assert_int_equal(us_lease_majority_time(one_never, 1), -1);

    /* 2 voters: both. */
    int64_t two[] = {1000, 900};
    assert_int_equal(us_lease_majority_time(two, 2), 900);
    int64_t two_never[] = {1000, -1};
    assert_int_equal(us_lease_majority_time(two_never, 2), -1);

    /* 3 voters: the second freshest, in any order. */
    int64_t three[][3] = {{1000, 900, 800}, {800, 900, 1000}, {900, 1000, 800},
                          {800, 1000, 900}, {1000, 800, 900}, {900, 800, 1000}};
    for (size_t i = 0; i < sizeof three / sizeof three[0]; i++)
        assert_int_equal(us_lease_majority_time(three[i], 3), 900);
    int64_t three_never[] = {1000, -1, 800};
    assert_int_equal(us_lease_majority_time(three_never, 3), 800);
    int64_t three_two_never[] = {-1, 1000, -1};
    assert_int_equal(us_lease_majority_time(three_two_never, 3), -1);
    int64_t three_all_never[] = {-1, -1, -1};
    assert_int_equal(us_lease_majority_time(three_all_never, 3), -1);
    int64_t three_ties[] = {5, 1000, 1000};
    assert_int_equal(us_lease_majority_time(three_ties, 3), 1000);
    int64_t three_low_ties[] = {1000, 5, 5};
    assert_int_equal(us_lease_majority_time(three_low_ties, 3), 5);

    /* 4 voters: 3 of 4. */
    int64_t four[] = {1, 4, 2, 3};
    assert_int_equal(us_lease_majority_time(four, 4), 2);
    int64_t four_never[] = {-1, 4, 2, 3};
    assert_int_equal(us_lease_majority_time(four_never, 4), 2);
    int64_t four_two_never[] = {-1, 4, -1, 3};
    assert_int_equal(us_lease_majority_time(four_two_never, 4), -1);

    /* 5 voters: the third freshest. */
    int64_t five[] = {970, 1000, 960, 980, 990};
    assert_int_equal(us_lease_majority_time(five, 5), 980);
    int64_t five_never[] = {-1, 1000, 960, -1, 990};
    assert_int_equal(us_lease_majority_time(five_never, 5), 960);
    int64_t five_three_never[] = {-1, 1000, -1, -1, 990};
    assert_int_equal(us_lease_majority_time(five_three_never, 5), -1);
    int64_t five_ties[] = {7, 7, 7, 7, 7};
    assert_int_equal(us_lease_majority_time(five_ties, 5), 7);
    int64_t five_some_ties[] = {980, 1000, 980, 5, 980};
    assert_int_equal(us_lease_majority_time(five_some_ties, 5), 980);

    /* The input is left alone. */
    assert_int_equal(five[0], 970);
    assert_int_equal(five[1], 1000);
    assert_int_equal(five[4], 990);
}

static void test_majority_time_bounds(void **state)
{
    (void)state;
    int64_t t[US_MAX_NODES + 1];
    for (int i = 0; i <= US_MAX_NODES; i++)
        t[i] = 100 + i;
    assert_int_equal(us_lease_majority_time(t, 0), -1);
    assert_int_equal(us_lease_majority_time(t, -1), -1);
    assert_int_equal(us_lease_majority_time(t, -1000), -1);
    assert_int_equal(us_lease_majority_time(t, US_MAX_NODES + 1), -1);
    assert_int_equal(us_lease_majority_time(NULL, 0), -1);
    /* 16 voters: 9 must be at q or later -> the 9th freshest = 100 + 7. */
    assert_int_equal(US_MAX_NODES, 16);
    assert_int_equal(us_lease_majority_time(t, US_MAX_NODES), 107);
    /* 16 with 8 "never": not a majority. */
    for (int i = 0; i < 8; i++)
        t[i] = -1;
    assert_int_equal(us_lease_majority_time(t, US_MAX_NODES), -1);
    t[3] = 5000; /* 9 set: the oldest of them */
    assert_int_equal(us_lease_majority_time(t, US_MAX_NODES), 108);
}

/* The definition: the latest t such that a majority of the entries are >= t; -1 if no majority
 * of entries is set. */
static void test_majority_time_random(void **state)
{
    (void)state;
    for (int iter = 0; iter < 50000; iter++) {
        int n = rnd() % 3 == 0 ? (int)rnd_range(1, US_MAX_NODES) : (int)rnd_range(1, 5);
        int64_t t[US_MAX_NODES], copy[US_MAX_NODES];
        int64_t hi = rnd() % 2 ? 4 : 100000; /* small ranges give ties */
        for (int i = 0; i < n; i++)
            t[i] = copy[i] = rnd() % 4 == 0 ? -1 : rnd_range(0, hi);
        int majority = n / 2 + 1;
        int64_t want = -1;
        for (int i = 0; i < n; i++) {
            if (t[i] < 0)
                continue;
            int at_or_after = 0;
            for (int j = 0; j < n; j++)
                at_or_after += t[j] >= t[i];
            if (at_or_after >= majority && t[i] > want)
                want = t[i];
        }
        assert_int_equal(us_lease_majority_time(t, n), want);
        assert_memory_equal(t, copy, sizeof t[0] * (size_t)n);
    }
}

/* ---- us_lease_stale_after ---- */

static void test_stale_after_profiles(void **state)
{
    (void)state;
    us_timing d = profile("default");
    assert_int_equal(d.lease_ms, 600);
    assert_int_equal(d.drift_pct, 2);
    assert_int_equal(d.margin_ms, 50);
    assert_int_equal(us_lease_stale_after(&d), 674); /* 600 * 1.04 + 50 */

    us_timing f = profile("fast");
    assert_int_equal(f.lease_ms, 200);
    assert_int_equal(f.drift_pct, 2);
    assert_int_equal(f.margin_ms, 25);
    assert_int_equal(us_lease_stale_after(&f), 233); /* 200 * 1.04 + 25 */

    /* What safety needs (a grant received at r on a voter running up to 1+ρ fast supports a
     * lease ending at most L/(1-ρ) after r in real time, and the voter revokes at the earliest
     * stale_after/(1+ρ) after r): stale_after >= L(1+ρ)/(1-ρ). L(1+2ρ) alone falls short by
     * ~2ρ²L; the margin covers it. A self-demoting holder must also see its lease run low
     * between two heartbeats. */
    const us_timing *ps[] = {&d, &f};
    for (int i = 0; i < 2; i++) {
        double rho = ps[i]->drift_pct / 100.0;
        double need = ps[i]->lease_ms * (1 + rho) / (1 - rho);
        assert_true((double)us_lease_stale_after(ps[i]) >= need + 10);
        assert_true((double)ps[i]->lease_ms * (1 + 2 * rho) < need);
        assert_true(ps[i]->demote_before_ms > ps[i]->heartbeat_ms);
        assert_true(ps[i]->heartbeat_ms < ps[i]->lease_ms / 2);
    }
}

static void test_stale_after_formula(void **state)
{
    (void)state;
    /* L*(100+2*drift_pct)/100 + margin in integer arithmetic. */
    us_timing t = profile("default");
    const int cases[][3] = {{600, 2, 50}, {200, 2, 25}, {1000, 5, 10}, {1000, 0, 0},
                            {333, 2, 0},  {1, 0, 0},    {0, 2, 7},     {60000, 10, 1000},
                            {999, 1, 3},  {150, 3, 1}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        t.lease_ms = cases[i][0];
        t.drift_pct = cases[i][1];
        t.margin_ms = cases[i][2];
        int64_t want = (int64_t)cases[i][0] * (100 + 2 * cases[i][1]) / 100 + cases[i][2];
        assert_int_equal(us_lease_stale_after(&t), want);
    }
    t.lease_ms = 1000, t.drift_pct = 5, t.margin_ms = 10;
    assert_int_equal(us_lease_stale_after(&t), 1110);
    t.lease_ms = 333, t.drift_pct = 2, t.margin_ms = 0;
    assert_int_equal(us_lease_stale_after(&t), 346); /* 346.32, rounded down */
    t.lease_ms = 1000, t.drift_pct = 0, t.margin_ms = 0;
    assert_int_equal(us_lease_stale_after(&t), 1000);
    /* No int overflow for a long lease. */
    t.lease_ms = 2000000000, t.drift_pct = 50, t.margin_ms = 0;
    assert_int_equal(us_lease_stale_after(&t), 4000000000LL);
}

/* ---- us_lease_judge ---- */

static void test_judge_boundaries(void **state)
{
    (void)state;
    /* 1 voter. The holder is it: nobody else, always valid. */
    assert_int_equal(us_lease_judge(1, true, 0, 0), US_LEASE_VALID);
    /* It is another node: its one report decides. */
    assert_int_equal(us_lease_judge(1, false, 1, 0), US_LEASE_EXPIRED);
    assert_int_equal(us_lease_judge(1, false, 0, 1), US_LEASE_VALID);
    assert_int_equal(us_lease_judge(1, false, 0, 0), US_LEASE_UNKNOWN);

    /* 3 voters (majority 2), holder votes: 2 others. */
    assert_int_equal(us_lease_judge(3, true, 2, 0), US_LEASE_EXPIRED);
    assert_int_equal(us_lease_judge(3, true, 1, 1), US_LEASE_VALID);
    assert_int_equal(us_lease_judge(3, true, 1, 0), US_LEASE_UNKNOWN);
    assert_int_equal(us_lease_judge(3, true, 0, 1), US_LEASE_VALID);
    assert_int_equal(us_lease_judge(3, true, 0, 0), US_LEASE_UNKNOWN);
    assert_int_equal(us_lease_judge(3, true, 0, 2), US_LEASE_VALID);
    /* Holder not a voter: 3 others. */
    assert_int_equal(us_lease_judge(3, false, 2, 1), US_LEASE_EXPIRED);
    assert_int_equal(us_lease_judge(3, false, 2, 0), US_LEASE_EXPIRED);
    assert_int_equal(us_lease_judge(3, false, 1, 2), US_LEASE_VALID);
    assert_int_equal(us_lease_judge(3, false, 1, 1), US_LEASE_UNKNOWN);
    assert_int_equal(us_lease_judge(3, false, 0, 1), US_LEASE_UNKNOWN);
    assert_int_equal(us_lease_judge(3, false, 0, 2), US_LEASE_VALID);
    assert_int_equal(us_lease_judge(3, false, 3, 0), US_LEASE_EXPIRED);

    /* 5 voters (majority 3), holder votes: 4 others. */
    assert_int_equal(us_lease_judge(5, true, 3, 0), US_LEASE_EXPIRED);
    assert_int_equal(us_lease_judge(5, true, 3, 1), US_LEASE_EXPIRED);
    assert_int_equal(us_lease_judge(5, true, 2, 2), US_LEASE_VALID);
    assert_int_equal(us_lease_judge(5, true, 2, 1), US_LEASE_UNKNOWN);
    assert_int_equal(us_lease_judge(5, true, 0, 2), US_LEASE_VALID);
    assert_int_equal(us_lease_judge(5, true, 0, 1), US_LEASE_UNKNOWN);
    assert_int_equal(us_lease_judge(5, true, 4, 0), US_LEASE_EXPIRED);
    /* Holder not a voter: 5 others. */
    assert_int_equal(us_lease_judge(5, false, 3, 2), US_LEASE_EXPIRED);
    assert_int_equal(us_lease_judge(5, false, 2, 3), US_LEASE_VALID);
    assert_int_equal(us_lease_judge(5, false, 2, 2), US_LEASE_UNKNOWN);
    assert_int_equal(us_lease_judge(5, false, 0, 3), US_LEASE_VALID);
    assert_int_equal(us_lease_judge(5, false, 0, 2), US_LEASE_UNKNOWN);
    assert_int_equal(us_lease_judge(5, false, 5, 0), US_LEASE_EXPIRED);
}

/* All reachable inputs against the rule, and the quorum intersection it rests on: when the leader
 * calls a lease expired, the holder plus every voter that did not report it stale is less than a
 * majority, so no majority of grants can renew it. */
static void test_judge_exhaustive(void **state)
{
    (void)state;
    for (int voters = 1; voters <= 7; voters++) {
        int majority = voters / 2 + 1;
        for (int hv = 0; hv <= 1; hv++) {
            int others = voters - hv;
            for (int stale = 0; stale <= others; stale++) {
                for (int fresh = 0; stale + fresh <= others; fresh++) {
                    us_lease_state st = us_lease_judge(voters, hv, stale, fresh);
                    us_lease_state want = stale >= majority        ? US_LEASE_EXPIRED
                                          : fresh + hv >= majority ? US_LEASE_VALID
                                                                   : US_LEASE_UNKNOWN;
                    assert_int_equal(st, want);
                    if (st == US_LEASE_EXPIRED)
                        assert_true(voters - stale < majority);
                    if (st == US_LEASE_VALID)
                        assert_true(fresh + hv >= majority);
                }
            }
        }
    }
}

/* ---- the protocol on simulated clocks ----
 *
 * Voters 0..N-1; the holder H is voter 0, or node N outside the voters. Every node ticks each
 * heartbeat on its own clock. At a tick H pings every voter (renewal request at its local t0) and
 * recomputes its lease as agent.c's recompute_lease does; every other voter computes its report
 * about H as lease_report does (revoking H when its grant is older than stale_after while H holds
 * the role in its applied log) and sends it to every other voter with its ping (any voter may be
 * or become the leader); the leader also asks for acknowledgements, sends the log, and releases
 * H's role as soon as us_agent_judge_lease would say US_LEASE_EXPIRED, if it has a fresh quorum.
 * A voter answers a renewal with a grant unless it revoked H, recording its receipt time. The
 * leader changes at random (an election gap, then a voter other than H that has the whole log).
 * Links are cut for random intervals (H from some voters, voters from each other), messages are
 * lost and delayed up to D. Each clock runs at one rate in [1-ρ, 1+ρ] and switches to another at
 * a random time.
 *
 * Voters other than the leader may restart: down for a while, then a new incarnation that forgot
 * its grants (and, as agent.c does, its revocations).
 *
 * The replicated log alternates "H gets the role" and "H loses it" (entries 1, 3, ... are
 * releases); the simulation starts with the first assignment applied everywhere, and the leader
 * may give H a role again once it judges H's lease valid. For role g, the grants that may
 * support H's lease are those made before the granting voter applied release g; the latest lease
 * they give must end, in real time, no later than release g. */

#define SIM_NODES 6 /* up to 5 voters and a holder that does not vote */
#define SIM_GENS 8  /* roles given to H in turn */
#define SIM_CUTS 128

typedef enum {
    RULE_STICKY, /* agent.c: a stale report counts until the voter sends another one */
    RULE_TAGGED, /* a stale report counts only if its voter had applied H's current assignment */
} stale_rule;

typedef enum {
    RESTART_NONE,
    RESTART_VOLATILE, /* agent.c: a restarted voter forgot its revocations */
    RESTART_PERSIST,  /* revocations survive a restart */
} restart_mode;

typedef struct sim_cfg {
    const char *name;
    int64_t L, S, hb, G, D; /* lease, stale_after, heartbeat, grant window, max message delay */
    int64_t election;       /* election gap */
    double rho;             /* clock rates lie in [1-rho, 1+rho] */
    int gens;               /* 1: H holds one role until released; more: released roles return */
    stale_rule rule;
    restart_mode restarts;
    double t_max;     /* real ms per run */
    long min_events;  /* run until this many events... */
    long max_runs;    /* ...or this many runs */
    bool stop_at_bad; /* stop at the first violation of the first kind (below) */
} sim_cfg;

typedef struct sim_result {
    long runs, events, releases;
    /* Real ms from the end of H's lease to the release, < 0 = violation: [0] leases from grants
     * made before the release, [1] also from grants made after it by voters that had not applied
     * it yet (the revocation did not hold). */
    double min_slack[2];
    long violations[2];
    char first_bad[2][512];
} sim_result;

typedef struct sim_clock {
    double off, r1, r2, sw; /* local = off + r1*t before sw, rate r2 after */
} sim_clock;

static double clk_local(const sim_clock *c, double t)
{
    return t < c->sw ? c->off + c->r1 * t : c->off + c->r1 * c->sw + c->r2 * (t - c->sw);
}

/* Real time at which the clock shows `local`. */
static double clk_real(const sim_clock *c, double local)
{
    double at_sw = c->off + c->r1 * c->sw;
    return local < at_sw ? (local - c->off) / c->r1 : c->sw + (local - at_sw) / c->r2;
}

enum { EV_TICK, EV_PING, EV_PONG, EV_APPEND, EV_DOWN, EV_UP, EV_ELECTION, EV_ELECTED };

typedef struct sim_ev {
    double t;
    uint64_t seq;
    int type, from, to;
    int64_t t0;    /* PING/PONG: the ping's send time on its sender's clock; APPEND: log length */
    uint64_t inc;  /* PING, TICK: the sender's incarnation */
    uint64_t term; /* PING/PONG: the term the ping was sent as leader in, 0 = not as leader */
    bool lease;    /* PING: a renewal request; PONG: granted */
    bool ack;      /* PONG: acknowledges the leadership */
    int k;         /* PONG: releases the granting voter had applied */
    double tg;     /* PONG: real time of the grant */
    bool has_rep;  /* PING: the sender's report about H */
    bool stale;
    int64_t age;
    int tag; /* assignments the reporting voter had applied */
} sim_ev;

typedef struct sim_report {
    int64_t age, rx; /* rx -1 = none */
    bool stale;
    int tag;
} sim_report;

typedef struct sim_node {
    sim_clock clk;
    bool down;
    uint64_t inc;
    int64_t started, granted; /* as a voter granting H */
    bool revoked;
    int applied;                  /* log entries applied */
    double tick_local;            /* next tick, local */
    uint64_t peer_inc[SIM_NODES]; /* incarnations seen */
    sim_report rep[SIM_NODES];    /* what each voter last reported about H */
    int64_t ack[SIM_NODES];       /* as leader */
} sim_node;

typedef struct sim_cut {
    int a, b;
    double from, to;
} sim_cut;

typedef struct sim {
    const sim_cfg *c;
    int voters, n_nodes, H, leader; /* leader -1 during an election */
    bool holder_votes;
    uint64_t term;
    sim_node nd[SIM_NODES];
    int log_len; /* odd: H holds a role */
    /* H */
    int64_t lease_until;
    int64_t grant_t0[SIM_NODES];
    /* For role g, the latest t0 each voter granted before it applied release g; and of those,
     * the latest it granted before the release itself (real time). */
    int64_t era_t0[SIM_NODES][SIM_GENS], pre_t0[SIM_NODES][SIM_GENS];
    double lease_end[SIM_GENS], pre_end[SIM_GENS]; /* the latest real ends of leases they give */
    double t_rel[SIM_GENS];                        /* real time of release g, -1 = not released */
    /* the network */
    int n_cuts;
    sim_cut cut[SIM_CUTS];
    double loss;
    /* the event queue */
    sim_ev *q;
    size_t n_q, cap_q;
    uint64_t seq;
    double t, t_end;
    long events;
} sim;

static bool ev_before(const sim_ev *a, const sim_ev *b)
{
    return a->t < b->t || (a->t == b->t && a->seq < b->seq);
}

static void push(sim *s, sim_ev e)
{
    if (s->n_q == s->cap_q) {
        s->cap_q = s->cap_q ? 2 * s->cap_q : 256;
        s->q = realloc(s->q, s->cap_q * sizeof *s->q);
        assert_non_null(s->q);
    }
    e.seq = s->seq++;
    size_t i = s->n_q++;
    while (i > 0 && ev_before(&e, &s->q[(i - 1) / 2])) {
        s->q[i] = s->q[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    s->q[i] = e;
}

static sim_ev pop(sim *s)
{
    sim_ev top = s->q[0], last = s->q[--s->n_q];
    size_t i = 0;
    for (;;) {
        size_t l = 2 * i + 1, m = i;
        const sim_ev *best = &last;
        if (l < s->n_q && ev_before(&s->q[l], best))
            m = l, best = &s->q[l];
        if (l + 1 < s->n_q && ev_before(&s->q[l + 1], best))
            m = l + 1;
        if (m == i)
            break;
        s->q[i] = s->q[m];
        i = m;
    }
    s->q[i] = last;
    return top;
}

static int64_t now_ms(const sim *s, int i)
{
    return (int64_t)floor(clk_local(&s->nd[i].clk, s->t));
}

static bool is_voter(const sim *s, int i)
{
    return i < s->voters;
}

static bool link_up(const sim *s, int a, int b, double t)
{
    for (int i = 0; i < s->n_cuts; i++)
        if (((s->cut[i].a == a && s->cut[i].b == b) || (s->cut[i].a == b && s->cut[i].b == a)) &&
            t >= s->cut[i].from && t < s->cut[i].to)
            return false;
    return true;
}

static void send_msg(sim *s, sim_ev e)
{
    if (unif() < s->loss || !link_up(s, e.from, e.to, s->t))
        return;
    double u = unif();
    double delay = u < 0.2 ? 0 : u < 0.4 ? (double)s->c->D : unif() * (double)s->c->D;
    e.t = s->t + delay;
    push(s, e);
}

static void schedule_tick(sim *s, int i)
{
    sim_node *n = &s->nd[i];
    n->tick_local += (double)s->c->hb + unif() * 3; /* a busy event loop ticks a little late */
    sim_ev e = {.t = clk_real(&n->clk, n->tick_local), .type = EV_TICK, .to = i, .inc = n->inc};
    if (e.t < s->t)
        e.t = s->t;
    push(s, e);
}

/* lease_report in agent.c, about H, by voter v. */
static sim_report lease_report(sim *s, int v, int64_t now)
{
    sim_node *n = &s->nd[v];
    bool holds = n->applied % 2 == 1;
    sim_report r = {.age = -1, .rx = now, .stale = false, .tag = (n->applied + 1) / 2};
    if (n->revoked && !holds)
        n->revoked = false; /* its role was released: it may earn a lease again */
    if (now - n->started < s->c->S)
        return r;
    r.age = now - (n->granted >= 0 ? n->granted : n->started);
    if (r.age > s->c->S && holds)
        n->revoked = true;
    r.stale = n->revoked && r.age > s->c->S;
    return r;
}

/* recompute_lease in agent.c, and the leases each era of grants supports. */
static void holder_recompute(sim *s, int64_t now)
{
    int64_t t0[SIM_NODES];
    for (int v = 0; v < s->voters; v++)
        t0[v] = v == s->H ? now : s->grant_t0[v];
    int64_t q = us_lease_majority_time(t0, s->voters);
    if (q >= 0 && q + s->c->L > s->lease_until)
        s->lease_until = q + s->c->L;
    for (int g = 0; g < SIM_GENS; g++) {
        for (int pre = 0; pre <= 1; pre++) {
            for (int v = 0; v < s->voters; v++)
                if (v != s->H)
                    t0[v] = pre ? s->pre_t0[v][g] : s->era_t0[v][g];
            q = us_lease_majority_time(t0, s->voters);
            if (q < 0)
                continue;
            double end = clk_real(&s->nd[s->H].clk, (double)(q + s->c->L));
            double *max = pre ? &s->pre_end[g] : &s->lease_end[g];
            if (end > *max)
                *max = end;
        }
    }
}

/* us_agent_judge_lease in agent.c, on the leader. */
static us_lease_state judge(sim *s, int64_t now)
{
    int stale = 0, fresh = 0;
    int l = s->leader, tag_now = (s->log_len + 1) / 2;
    for (int v = 0; v < s->voters; v++) {
        if (v == s->H)
            continue;
        sim_report r;
        if (v == l) {
            r = lease_report(s, l, now); /* our own grants, judged like a report */
        } else {
            r = s->nd[l].rep[v];
            if (r.rx < 0)
                continue;
        }
        stale += r.stale && (s->c->rule == RULE_STICKY || r.tag == tag_now);
        fresh += r.age >= 0 && r.age <= s->c->L && now - r.rx <= s->c->L;
    }
    return us_lease_judge(s->voters, s->holder_votes, stale, fresh);
}

static void leader_tick(sim *s, int64_t now)
{
    int l = s->leader;
    for (int v = 0; v < s->voters; v++)
        if (v != l && s->nd[v].applied < s->log_len)
            send_msg(s, (sim_ev){.type = EV_APPEND, .from = l, .to = v, .t0 = s->log_len});
    int64_t acks[SIM_NODES];
    for (int v = 0; v < s->voters; v++)
        acks[v] = v == l ? now : s->nd[l].ack[v];
    int64_t q = us_lease_majority_time(acks, s->voters);
    if (q < 0 || now - q > s->c->G)
        return; /* no fresh quorum: no decisions */
    us_lease_state st = judge(s, now);
    if (s->log_len % 2 == 1) {
        if (st == US_LEASE_EXPIRED) {
            int g = s->log_len / 2;
            s->t_rel[g] = s->t;
            /* The leases tracked for role g include H's own. */
            if (s->lease_until > 0)
                assert_true(s->pre_end[g] >= clk_real(&s->nd[s->H].clk, (double)s->lease_until));
            s->nd[l].applied = ++s->log_len;
            if (s->c->gens == 1 && s->t + 2.0 * (double)s->c->S < s->t_end)
                s->t_end = s->t + 2.0 * (double)s->c->S; /* late grants and answers */
        }
    } else if ((s->log_len + 1) / 2 < s->c->gens && st == US_LEASE_VALID && unif() < 0.3) {
        s->nd[l].applied = ++s->log_len;
    }
}

static void on_tick(sim *s, const sim_ev *e)
{
    int i = e->to;
    sim_node *n = &s->nd[i];
    if (n->down || e->inc != n->inc)
        return;
    int64_t now = now_ms(s, i);
    uint64_t term = i == s->leader ? s->term : 0;
    if (i == s->H) {
        holder_recompute(s, now);
        for (int v = 0; v < s->voters; v++)
            if (v != i)
                send_msg(s, (sim_ev){.type = EV_PING,
                                     .from = i,
                                     .to = v,
                                     .t0 = now,
                                     .inc = n->inc,
                                     .term = term,
                                     .lease = true});
    } else if (is_voter(s, i)) {
        sim_report r = lease_report(s, i, now);
        for (int v = 0; v < s->voters; v++)
            if (v != i && (v != s->H || term))
                send_msg(s, (sim_ev){.type = EV_PING,
                                     .from = i,
                                     .to = v,
                                     .t0 = now,
                                     .inc = n->inc,
                                     .term = term,
                                     .has_rep = true,
                                     .stale = r.stale,
                                     .age = r.age,
                                     .tag = r.tag});
        if (i == s->leader)
            leader_tick(s, now);
    }
    schedule_tick(s, i);
}

static void on_ping(sim *s, const sim_ev *e)
{
    int j = e->to, i = e->from;
    sim_node *n = &s->nd[j];
    int64_t now = now_ms(s, j);
    if (e->inc != n->peer_inc[i]) {
        n->rep[i].rx = -1; /* a restarted voter forgot its grants */
        n->peer_inc[i] = e->inc;
    }
    if (e->has_rep)
        n->rep[i] = (sim_report){.age = e->age, .rx = now, .stale = e->stale, .tag = e->tag};
    bool grant = e->lease && !n->revoked;
    if (grant)
        n->granted = now;
    bool ack = i == s->leader && e->term == s->term;
    if (grant || ack)
        send_msg(s, (sim_ev){.type = EV_PONG,
                             .from = j,
                             .to = i,
                             .t0 = e->t0,
                             .term = e->term,
                             .lease = grant,
                             .ack = ack,
                             .k = n->applied / 2,
                             .tg = s->t});
}

static void on_pong(sim *s, const sim_ev *e)
{
    int i = e->to, j = e->from;
    if (e->lease && i == s->H) {
        if (e->t0 > s->grant_t0[j])
            s->grant_t0[j] = e->t0;
        for (int g = e->k; g < SIM_GENS; g++) {
            if (e->t0 > s->era_t0[j][g])
                s->era_t0[j][g] = e->t0;
            if (e->t0 > s->pre_t0[j][g] && (s->t_rel[g] < 0 || e->tg < s->t_rel[g]))
                s->pre_t0[j][g] = e->t0;
        }
        holder_recompute(s, now_ms(s, i));
    }
    if (e->ack && i == s->leader && e->term == s->term && e->t0 > s->nd[i].ack[j])
        s->nd[i].ack[j] = e->t0;
}

static void on_up(sim *s, int v)
{
    sim_node *n = &s->nd[v];
    n->down = false;
    n->inc++;
    n->started = now_ms(s, v);
    n->granted = -1;
    if (s->c->restarts != RESTART_PERSIST)
        n->revoked = false;
    for (int i = 0; i < SIM_NODES; i++) {
        n->rep[i].rx = -1;
        n->peer_inc[i] = 0;
        n->ack[i] = -1;
    }
    n->tick_local = clk_local(&n->clk, s->t);
    schedule_tick(s, v);
}

static void on_election(sim *s, const sim_ev *e)
{
    if (e->type == EV_ELECTION) {
        s->leader = -1;
        int64_t gap = rnd_range(s->c->election, 2 * s->c->election);
        push(s, (sim_ev){.t = s->t + (double)gap, .type = EV_ELECTED});
        return;
    }
    int cand[SIM_NODES], nc = 0;
    for (int v = 0; v < s->voters; v++)
        if (v != s->H && !s->nd[v].down)
            cand[nc++] = v;
    if (nc == 0) {
        push(s, (sim_ev){.t = s->t + (double)s->c->election, .type = EV_ELECTED});
        return;
    }
    int l = cand[rnd() % (uint64_t)nc];
    s->leader = l;
    s->term++;
    s->nd[l].applied = s->log_len;
    for (int v = 0; v < SIM_NODES; v++)
        s->nd[l].ack[v] = -1;
    push(s, (sim_ev){.t = s->t + unif_in(2, 15) * (double)s->c->S, .type = EV_ELECTION});
}

static sim_clock random_clock(double rho, double t_max)
{
    sim_clock c;
    c.off = unif() * 1e7;
    double r[2];
    for (int i = 0; i < 2; i++) {
        uint64_t k = rnd() % 3; /* the extremes are where the worst cases are */
        r[i] = k == 0 ? 1 - rho : k == 1 ? 1 + rho : unif_in(1 - rho, 1 + rho);
    }
    c.r1 = r[0];
    c.r2 = r[1];
    c.sw = unif() * t_max;
    return c;
}

static void add_cut(sim *s, int a, int b, double from, double len)
{
    if (s->n_cuts < SIM_CUTS)
        s->cut[s->n_cuts++] = (sim_cut){a, b, from, from + len};
}

static sim s; /* large; its event queue is reused across runs */

/* One random run, added to *res. */
static void sim_run(const sim_cfg *c, sim_result *res)
{
    sim_ev *q = s.q;
    size_t cap = s.cap_q;
    memset(&s, 0, sizeof s);
    s.q = q;
    s.cap_q = cap;
    s.c = c;
    s.voters = rnd() % 2 ? 3 : 5;
    s.holder_votes = rnd() % 2;
    s.H = s.holder_votes ? 0 : s.voters;
    s.n_nodes = s.voters + !s.holder_votes;
    s.log_len = 1;
    s.lease_until = 0;
    s.t_end = c->t_max;
    double S = (double)c->S;
    for (int g = 0; g < SIM_GENS; g++) {
        s.lease_end[g] = s.pre_end[g] = -INFINITY;
        s.t_rel[g] = -1;
    }
    for (int v = 0; v < SIM_NODES; v++) {
        s.grant_t0[v] = -1;
        for (int g = 0; g < SIM_GENS; g++)
            s.era_t0[v][g] = s.pre_t0[v][g] = -1;
    }
    double losses[] = {0, 0, 0.01, 0.05, 0.2};
    s.loss = losses[rnd() % 5];

    /* Partitions: every link now and then, H's more often, and usually one long cut of H from
     * some of the voters. */
    for (int a = 0; a < s.n_nodes; a++) {
        for (int b = a + 1; b < s.n_nodes; b++) {
            int k = (int)(rnd() % 4) + (a == s.H || b == s.H);
            for (int i = 0; i < k; i++)
                add_cut(&s, a, b, unif() * c->t_max,
                        unif() < 0.7 ? unif() * 3 * S : unif() * 15 * S);
        }
    }
    int isolations = (int)(rnd() % 3) + (c->gens > 1);
    for (int i = 0; i < isolations; i++) {
        double from = unif() * c->t_max * 0.7, len = unif_in(0.8 * S, 5 * S);
        for (int v = 0; v < s.voters; v++)
            if (v != s.H && rnd() % 4 != 0)
                add_cut(&s, s.H, v, from, len);
    }

    for (int i = 0; i < s.n_nodes; i++) {
        sim_node *n = &s.nd[i];
        n->clk = random_clock(c->rho, c->t_max);
        n->inc = 1;
        n->granted = -1;
        n->applied = 1;
        n->started = (int64_t)floor(clk_local(&n->clk, 0));
        for (int j = 0; j < SIM_NODES; j++) {
            n->rep[j].rx = -1;
            n->ack[j] = -1;
        }
        n->tick_local = clk_local(&n->clk, 0) + unif() * (double)c->hb - (double)c->hb;
        schedule_tick(&s, i);
    }
    s.leader = s.holder_votes ? 1 : 0;
    s.term = 1;
    push(&s, (sim_ev){.t = unif_in(2, 15) * S, .type = EV_ELECTION});
    if (c->restarts != RESTART_NONE) {
        int k = (int)(rnd() % 4);
        for (int i = 0; i < k; i++) {
            int v = (int)(rnd() % (uint64_t)s.voters);
            if (v != s.H)
                push(&s, (sim_ev){.t = unif() * c->t_max, .type = EV_DOWN, .to = v});
        }
    }

    while (s.n_q > 0) {
        sim_ev e = pop(&s);
        if (e.t > s.t_end)
            break;
        s.t = e.t;
        s.events++;
        if ((e.type == EV_PING || e.type == EV_PONG || e.type == EV_APPEND) &&
            (s.nd[e.to].down || !link_up(&s, e.from, e.to, s.t)))
            continue; /* cut while on the way, or the receiver is down */
        switch (e.type) {
        case EV_TICK:
            on_tick(&s, &e);
            break;
        case EV_PING:
            on_ping(&s, &e);
            break;
        case EV_PONG:
            on_pong(&s, &e);
            break;
        case EV_APPEND:
            if (e.t0 > s.nd[e.to].applied)
                s.nd[e.to].applied = (int)e.t0;
            break;
        case EV_DOWN:
            if (e.to != s.leader && !s.nd[e.to].down) {
                s.nd[e.to].down = true;
                push(&s, (sim_ev){.t = s.t + unif_in(5, 300), .type = EV_UP, .to = e.to});
            }
            break;
        case EV_UP:
            on_up(&s, e.to);
            break;
        case EV_ELECTION:
        case EV_ELECTED:
            on_election(&s, &e);
            break;
        }
    }
    s.n_q = 0;

    for (int g = 0; g < SIM_GENS; g++) {
        if (s.t_rel[g] < 0)
            continue;
        res->releases++;
        double slack[2] = {s.t_rel[g] - s.pre_end[g], s.t_rel[g] - s.lease_end[g]};
        for (int k = 0; k < 2; k++)
            if (slack[k] < res->min_slack[k])
                res->min_slack[k] = slack[k];
        if (slack[1] >= 0)
            continue;
        int k = slack[0] < 0 ? 0 : 1;
        if (res->violations[k]++ == 0)
            snprintf(res->first_bad[k], sizeof res->first_bad[k],
                     "%s run %ld: %d voters, holder %s voter, role %d released at real %.3f "
                     "ms while a lease from grants made %s ran until %.3f ms",
                     c->name, res->runs, s.voters, s.holder_votes ? "a" : "not a", g, s.t_rel[g],
                     k ? "after the release by voters that had not applied it yet"
                       : "before the release",
                     s.t_rel[g] - slack[k]);
    }
    res->runs++;
    res->events += s.events;
}

static sim_result simulate(const sim_cfg *c, uint64_t seed)
{
    sim_result r = {.min_slack = {INFINITY, INFINITY}};
    g_rng = seed;
    while ((r.events < c->min_events || r.runs == 0) && r.runs < c->max_runs &&
           !(c->stop_at_bad && r.violations[0]))
        sim_run(c, &r);
    free(s.q);
    s.q = NULL;
    s.cap_q = 0;
    printf("  %-28s %6ld runs %9ld events %5ld releases, min slack %8.3f / %8.3f ms, %ld + %ld "
           "violations\n",
           c->name, r.runs, r.events, r.releases, r.min_slack[0], r.min_slack[1], r.violations[0],
           r.violations[1]);
    for (int k = 0; k < 2; k++)
        if (r.violations[k])
            printf("    first: %s\n", r.first_bad[k]);
    return r;
}

static sim_cfg profile_cfg(const char *name, int gens)
{
    us_timing t = profile(name);
    sim_cfg c = {
        .name = name,
        .L = t.lease_ms,
        .S = us_lease_stale_after(&t),
        .hb = t.heartbeat_ms,
        .G = t.grant_window_ms,
        .D = 50,
        .election = t.election_ms,
        .rho = t.drift_pct / 100.0,
        .gens = gens,
        .rule =
            RULE_TAGGED, /* what src/agent/agent.c does: reports carry the voter's state version */
        .restarts = RESTART_PERSIST, /* revocations are written to the data dir */
        .min_events = 1000000,
        .max_runs = 100000,
    };
    c.t_max = 30.0 * (double)c.S;
    return c;
}

/* The smallest slack the derivation allows: the voter revokes at least S/(1+ρ) after receiving
 * the renewal, which was sent at most L/(1-ρ) before the lease it supports ends. */
static double slack_bound(const sim_cfg *c)
{
    return (double)c->S / (1 + c->rho) - (double)c->L / (1 - c->rho);
}

static void check_safe(const sim_cfg *c, uint64_t seed)
{
    sim_result r = simulate(c, seed);
    for (int k = 0; k < 2; k++)
        if (r.violations[k])
            fail_msg("%s", r.first_bad[k]);
    assert_true(r.events >= c->min_events);
    assert_true(r.releases >= r.runs / 4); /* mostly not vacuous */
    assert_true(r.min_slack[1] >= slack_bound(c) - 1e-6);
}

static void test_sim_default(void **state)
{
    (void)state;
    sim_cfg c = profile_cfg("default", 1);
    printf("  slack bound S/(1+rho) - L/(1-rho) = %.3f ms\n", slack_bound(&c));
    check_safe(&c, 1);
}

static void test_sim_fast(void **state)
{
    (void)state;
    sim_cfg c = profile_cfg("fast", 1);
    printf("  slack bound S/(1+rho) - L/(1-rho) = %.3f ms\n", slack_bound(&c));
    check_safe(&c, 2);
}

/* Without drift and margin, stale_after = L - 50 lets a voter revoke while a lease it supported
 * still runs: the simulation must see that. */
static void test_sim_unsafe_short_stale_after(void **state)
{
    (void)state;
    sim_cfg c = profile_cfg("default", 1);
    c.name = "unsafe: S = L - 50, rho = 0";
    c.rho = 0;
    c.S = c.L - 50;
    c.t_max = 30.0 * (double)c.S;
    c.min_events = 3000000;
    c.stop_at_bad = true;
    sim_result r = simulate(&c, 3);
    assert_true(r.violations[0] > 0);
    assert_true(r.min_slack[0] < 0);
}

/* stale_after = L, no allowance for the 2% drift the clocks have: also unsafe (the slack can
 * go down to L/(1+ρ) - L/(1-ρ) = -24 ms). */
static void test_sim_unsafe_no_drift_allowance(void **state)
{
    (void)state;
    sim_cfg c = profile_cfg("default", 1);
    c.name = "unsafe: S = L, rho = 0.02";
    c.S = c.L;
    c.t_max = 30.0 * (double)c.S;
    c.min_events = 3000000;
    c.stop_at_bad = true;
    sim_result r = simulate(&c, 4);
    assert_true(r.violations[0] > 0);
}

/* Why stale reports carry the voter's state version (src/agent/agent.c, us_agent_judge_lease):
 * without it a stale report counts until its voter sends another one, also across roles. When the
 * voter's later reports do not reach the leader, its report from an earlier role of the holder
 * still counts after the holder got a new role, though the voter un-revoked the holder and grants
 * it again (found by this simulation, seed 8): 5 voters 0-4, H not a voter, leader 0. H is cut from
 * 2, 3, 4 and briefly from 1; 1-4 revoke H and report stale; 0 releases H's role at 2701 ms. Voter
 * 1 applies the release at 3043 ms, then the link 0-1 is cut (3112 to 9960 ms): 1 un-revokes H and
 * grants it again, but 0 keeps its last report, "stale". 0 gives H a new role at 4112 ms (stale 1 <
 * 3, fresh 4). Later H is cut from 3 and 4, which revoke it, and at 9048 ms 0 releases the new role
 * with stale = 3 (1's report from 6142 ms before, 3, 4) while H holds a lease from 0 itself (age
 * 0), 1 and 2 that runs until 9510 ms. Counting a stale report only if its voter had applied the
 * entry that gave the holder its current role (RULE_TAGGED: the report carries that much of the
 * voter's log) closes it. */
static void test_sim_reassign(void **state)
{
    (void)state;
    sim_cfg c = profile_cfg("default", SIM_GENS);
    c.name = "roles return, untagged reports (unsafe)";
    c.rule = RULE_STICKY;
    c.min_events = 3000000;
    c.stop_at_bad = true;
    sim_result r = simulate(&c, 8);
    assert_true(r.violations[0] > 0);

    c = profile_cfg("default", SIM_GENS);
    c.name = "roles return, tagged reports";
    c.rule = RULE_TAGGED;
    c.min_events = 600000;
    check_safe(&c, 8);
    c = profile_cfg("fast", SIM_GENS);
    c.name = "fast, roles return, tagged";
    c.rule = RULE_TAGGED;
    c.min_events = 600000;
    check_safe(&c, 18);
}

/* Why revocations are persisted (src/agent/agent.c, save_revocations): if they lived in memory
 * only, a voter that restarts would grant the holder again, while the leader still counts its stale
 * report from before the restart if it has not heard from the new incarnation (found by this
 * simulation, seed 9): 3 voters 0-2, H not a voter, leader 0. H is cut from 1 (4128 to 6769 ms): 1
 * revokes H at 6395 ms and reports stale; the link 0-1 is cut from 6645 ms. 1 restarts (8206 to
 * 8417 ms) and grants H again. H is cut from 0 at 9635 ms: 0 revokes H at 10328 ms and releases its
 *   role with stale = 2 (itself, and 1's report from before its restart) while H holds a lease
 *   from 1 and 2 until 10870 ms.
 * Revocations that survive a restart (RESTART_PERSIST) close it. */
static void test_sim_restarts(void **state)
{
    (void)state;
    sim_cfg c = profile_cfg("default", 1);
    c.name = "restarts, revocations in memory (unsafe)";
    c.rule = RULE_STICKY;
    c.restarts = RESTART_VOLATILE;
    c.min_events = 3000000;
    c.stop_at_bad = true;
    sim_result r = simulate(&c, 9);
    assert_true(r.violations[0] > 0);

    c = profile_cfg("default", SIM_GENS);
    c.name = "restarts, persisted, tagged";
    c.rule = RULE_TAGGED;
    c.restarts = RESTART_PERSIST;
    c.min_events = 600000;
    check_safe(&c, 10);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_majority_time_small),
        cmocka_unit_test(test_majority_time_bounds),
        cmocka_unit_test(test_majority_time_random),
        cmocka_unit_test(test_stale_after_profiles),
        cmocka_unit_test(test_stale_after_formula),
        cmocka_unit_test(test_judge_boundaries),
        cmocka_unit_test(test_judge_exhaustive),
        cmocka_unit_test(test_sim_default),
        cmocka_unit_test(test_sim_fast),
        cmocka_unit_test(test_sim_unsafe_short_stale_after),
        cmocka_unit_test(test_sim_unsafe_no_drift_allowance),
        cmocka_unit_test(test_sim_reassign),
        cmocka_unit_test(test_sim_restarts),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
