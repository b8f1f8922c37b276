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

/* Instance reports. A node's reports have a generation that grows when they change; a ping carries
 * them to a peer until the peer answered a ping that carried the current generation, and now and
 * then all the same (a ping without them leaves the peer's copy as it was). Changed reports go at
 * once to the Raft leader, which decides by them (to every voter while no leader is known: whoever
 * wins needs them), and to the holder of the active role of a service whose proxy runs here (a
 * holder handing its role over waits until no proxy has connections open to it: two heartbeats
 * after the switchover, the reports it has must count them all); to any other peer at most every
 * US_FANOUT_REP_GAP heartbeats: there they feed only the local view (status, metrics), and 63
 * nodes placing services sent every voter a changed report each heartbeat. */
#define US_FANOUT_REP_GAP 3      /* heartbeats */
#define US_FANOUT_REP_REFRESH 50 /* heartbeats */
typedef struct us_fanout_rep {
    bool peer_leads;   /* the peer is the Raft leader in our view */
    bool leader_known; /* some node is, in our view */
    bool peer_votes;   /* as in us_fanout_pair */
    bool peer_proxied; /* it holds the active role of a service whose proxy runs here */
    bool owed;         /* it has not acknowledged our current generation */
    int64_t since_ms;  /* since a ping to it last carried our reports (large: never) */
    int heartbeat_ms;
} us_fanout_rep;

/* Whether our next ping to the peer carries our reports. */
bool us_fanout_with_reports(const us_fanout_rep *r);
/* Whether a change of our reports is a reason to ping the peer off the heartbeat: it leads (or
 * there is no known leader and it votes), or it holds the role of a service we proxy. */
bool us_fanout_reports_urgent(const us_fanout_rep *r);

/* Which ping rounds carried which generation to one peer: the last unbroken run of rounds
 * [from, to] that all carried generation `gen` (pings are datagrams: a pong may answer any of
 * them, or come after the next ping was sent). */
typedef struct us_rep_run {
    uint64_t gen; /* 0 = none sent */
    uint64_t from, to;
    uint64_t last; /* the last round whose ping included the peer */
} us_rep_run;

/* A ping of round `round` (rounds grow) went to the peer, carrying generation `gen` of our reports
 * or (gen 0) none. */
void us_rep_run_sent(us_rep_run *r, uint64_t round, uint64_t gen);
/* The generation the peer has once it answered round `round`, or 0 when that answer says nothing
 * about our reports (that ping carried none, or an older run). */
uint64_t us_rep_run_acked(const us_rep_run *r, uint64_t round);

#endif
