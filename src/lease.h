/* lease.h — the lease arithmetic: until when a node may act as active, and when the leader may
 * be sure that it no longer does. Pure functions over CLOCK_MONOTONIC milliseconds.
 *
 * Protocol (docs/timing.md has the derivation):
 *  - Every heartbeat each node sends the Raft leader a renewal (a ping) at its local time t0. If
 *    the leader grants it, the node's lease runs until t0 + L on the node's own clock.
 *  - The leader grants only while a quorum of voters acknowledged its leadership (answered a ping
 *    of the leader's sent at time q or later, with now - q <= G). Voters that voted for a newer
 *    leader no longer acknowledge, so an old leader stops granting at most G after the new
 *    leader's election.
 *  - On a grant received at time r the leader records granted_until = r + L*(1+drift) + margin.
 *  - A leader that just took over does not know its predecessor's grants: until
 *    W = (G + L)*(1+drift) + margin has passed since it took over, a node it has no record for has
 *    lease 'unknown' (possibly still valid).
 */
#ifndef US_LEASE_H
#define US_LEASE_H

#include <stdbool.h>
#include <stdint.h>

#include "config.h"
#include "model.h"

/* The latest time q such that a majority of the voters acknowledged the leader at q or later.
 * ack_ms[i] for voter i (the leader's own entry should be `now`); -1 = never. */
int64_t us_lease_quorum_time(const int64_t *ack_ms, int n_voters);

bool us_lease_may_grant(const us_timing *t, int64_t quorum_ms, int64_t now_ms);

/* Leader side: until when the node that sent the renewal received at recv_ms may act. */
int64_t us_lease_granted_until(const us_timing *t, int64_t recv_ms);

/* How long a new leader treats leases it has no record of as possibly valid. */
int64_t us_lease_takeover_wait(const us_timing *t);

/* Leader side: the lease state of a node. */
us_lease_state us_lease_state_of(const us_timing *t, int64_t granted_until_ms,
                                 int64_t leader_since_ms, int64_t now_ms);

/* CLOCK_MONOTONIC in ms / ns. */
int64_t us_now_ms(void);
int64_t us_now_ns(void);

#endif
