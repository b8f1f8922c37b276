/* lease.h — the lease arithmetic: until when a node may act as active, and when the leader may
 * be sure that it no longer does. Pure functions over CLOCK_MONOTONIC milliseconds.
 *
 * Leases are granted by the voters, not by the Raft leader alone, so that they survive a leader
 * change (an election takes longer than a lease). docs/timing.md has the derivation.
 *  - Every heartbeat each node asks every voter to renew its lease (a ping sent at its local time
 *    t0). A voter grants unless it has revoked the node (below). The node's lease runs until
 *    t0 + L, where t0 is the send time of the majority-th freshest granted request (a node that
 *    is a voter counts itself as granting now).
 *  - A voter that has not granted a node for longer than stale_after = L(1+2ρ)+m while that node
 *    holds an active role revokes it: it grants it nothing more until the replicated state shows
 *    the node without an active role. It reports "stale" only together with the revocation.
 *  - The leader takes a role away for an expired lease only when a majority of voters (other than
 *    the holder) report it stale. Every majority the holder could renew with includes one of
 *    them, and they grant no more: the holder's lease has run out and stays out.
 *  - A voter that restarted does not know what it granted before: it reports "unknown" for
 *    stale_after after its start.
 */
#ifndef US_LEASE_H
#define US_LEASE_H

#include <stdbool.h>
#include <stdint.h>

#include "core/model.h"

/* A timing profile (`[cluster] profile`): every number that decides how fast a failure is
 * detected and how safe the lease arithmetic is. docs/timing.md explains the arithmetic. */
typedef struct us_timing {
    char name[16];        /* "default" | "fast" */
    int heartbeat_ms;     /* agent heartbeats and lease renewals; also Raft heartbeat */
    int election_ms;      /* Raft election timeout */
    int lease_ms;         /* L: lease length granted per renewal */
    int grant_window_ms;  /* G: the leader grants only if a quorum acknowledged it within G */
    int drift_pct;        /* clock-rate drift allowance, percent */
    int margin_ms;        /* fixed safety margin added on the leader's side */
    int suspect_ms;       /* silence after which a node is 'suspect' */
    int dead_ms;          /* silence after which a node is 'dead' */
    int demote_before_ms; /* an active whose lease has less than this left stops its instance */
} us_timing;

/* Fill *out with the named profile ("default" or "fast"); -1 for an unknown name. */
int us_timing_profile(const char *name, us_timing *out);

/* The k-th freshest of n times (k = n/2 + 1, a majority); -1 entries are "never". -1 if fewer
 * than k entries are set. */
int64_t us_lease_majority_time(const int64_t *t, int n);

/* A voter's grant older than this (ms) no longer contributes to any lease. */
int64_t us_lease_stale_after(const us_timing *t);

/* Leader side: judge a holder's lease from the voters' reports. `voters` counts all voters,
 * `holder_votes` whether the holder is one of them; `stale` and `fresh` count the other voters
 * that reported the holder stale (revoked) or recently granted. */
us_lease_state us_lease_judge(int voters, bool holder_votes, int stale, int fresh);

#endif
