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
