/* fanout.c — see fanout.h. */
#include "core/fanout.h"

bool us_fanout_every_heartbeat(const us_fanout_pair *p)
{
    return p->self_leads || p->peer_votes || p->peer_leads || p->peer_unheard ||
           (p->self_votes && p->peer_slow);
}

int us_fanout_slow_heartbeats(int n_slow)
{
    int k = (n_slow + US_FANOUT_SLOW_PER_HEARTBEAT - 1) / US_FANOUT_SLOW_PER_HEARTBEAT;
    return k > US_FANOUT_SLOW_MIN ? k : US_FANOUT_SLOW_MIN;
}

bool us_fanout_slow_due(uint64_t tick, uint64_t peer_id, int k)
{
    if (k <= 1)
        return true;
    return (tick + peer_id % (uint64_t)k) % (uint64_t)k == 0;
}

void us_fanout_silence(const us_timing *t, int interval_ms, int64_t *suspect_ms, int64_t *dead_ms)
{
    int64_t extra = interval_ms > t->heartbeat_ms ? interval_ms - t->heartbeat_ms : 0;
    *suspect_ms = t->suspect_ms + 2 * extra;
    *dead_ms = t->dead_ms + 3 * extra;
}

bool us_fanout_reports_urgent(const us_fanout_rep *r)
{
    return r->peer_proxied || (r->leader_known ? r->peer_leads : r->peer_votes);
}

bool us_fanout_with_reports(const us_fanout_rep *r)
{
    int64_t hb = r->heartbeat_ms > 0 ? r->heartbeat_ms : 1;
    if (r->since_ms >= US_FANOUT_REP_REFRESH * hb)
        return true;
    return r->owed && (us_fanout_reports_urgent(r) || r->since_ms >= US_FANOUT_REP_GAP * hb);
}

void us_rep_run_sent(us_rep_run *r, uint64_t round, uint64_t gen)
{
    if (gen) {
        if (r->gen != gen || r->to != r->last || r->gen == 0)
            r->from = round;
        r->to = round;
        r->gen = gen;
    }
    r->last = round;
}

uint64_t us_rep_run_acked(const us_rep_run *r, uint64_t round)
{
    return r->gen && round >= r->from && round <= r->to ? r->gen : 0;
}
