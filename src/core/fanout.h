/* fanout.h — whom a node pings how often, and how long a peer's silence may last before it counts
 * as suspect or dead. Pure functions: no I/O, no clock reads.
 *
 * Every heartbeat a node pings the peers on the lease path: every voter (a ping to a voter is a
 * lease renewal, and a voter's lease reports feed the leader), the Raft leader (it judges every
 * node's liveness and needs every node's instance reports, and its pings carry the commit index
 * that tells followers whether they caught up). The leader pings every peer every heartbeat; a
 * voter that does not lead pings a non-voter every heartbeat only while that peer does not ping it
 * every heartbeat (it has not learned yet that we vote: it learns from our own pings within a
 * heartbeat, well before we could revoke it: docs/timing.md), and slowly after that: the peer
 * hears from us every heartbeat all the same, in the answers to its renewals. Between two
 * non-voters, which only feed each other's local view (status, metrics), pings go every
 * us_fanout_slow_heartbeats heartbeats; each ping says how soon the next one follows ("iv"), and
 * the receiver stretches its silence bounds for that peer by as much (us_fanout_silence). So a
 * cluster of N nodes with V voters sends about (V + 1)N pings a heartbeat instead of N², and a
 * non-voter's view of another non-voter lags by at most a slow interval. docs/timing.md, "Who
 * pings whom". */
#ifndef US_FANOUT_H
#define US_FANOUT_H

#include <stdbool.h>
#include <stdint.h>

#include "core/lease.h"

/* What a node knows about itself and one peer when it decides how often to ping that peer. */
typedef struct us_fanout_pair {
    bool self_votes;   /* we are a voter in our view of the Raft configuration */
    bool self_leads;   /* we are the Raft leader */
    bool peer_votes;   /* the peer is a voter in our view, or said so in its last ping */
    bool peer_leads;   /* the peer is the Raft leader in our view */
    bool peer_unheard; /* no datagram from its current incarnation yet */
    bool peer_slow;    /* its last ping to us said its next one follows after more than a
                          heartbeat ("iv"): it does not count us among the voters */
} us_fanout_pair;

/* Whether the pair is on the lease path: pinged every heartbeat. */
bool us_fanout_every_heartbeat(const us_fanout_pair *p);

/* A slow pair is pinged every this many heartbeats, given how many slow peers a node has: at least
 * US_FANOUT_SLOW_MIN, more when there are many, so that a node sends at most about
 * US_FANOUT_SLOW_PER_HEARTBEAT slow pings per heartbeat. */
#define US_FANOUT_SLOW_MIN 10
#define US_FANOUT_SLOW_PER_HEARTBEAT 4
int us_fanout_slow_heartbeats(int n_slow);

/* Whether heartbeat number `tick` is the one of a slow peer of Raft id `peer_id` (the heartbeats
 * of different peers are spread over the k ticks, so a node's slow pings do not bunch). */
bool us_fanout_slow_due(uint64_t tick, uint64_t peer_id, int k);

/* The silence bounds (ms) for a peer that pings us every `interval_ms` (its "iv"; 0 or a heartbeat
 * or less: the profile's own bounds): a slow peer is suspect after two of its pings more than the
 * profile allows, dead after three more. */
void us_fanout_silence(const us_timing *t, int interval_ms, int64_t *suspect_ms, int64_t *dead_ms);

#endif
