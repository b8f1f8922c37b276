/* decide.h — the decision function: cluster state + observations -> assignments, with reasons.
 *
 * Pure: no I/O, no clock, no globals. Same input, same output. The controller on the Raft leader
 * calls it and turns each decision into an FSM command guarded by the assignment's `gen`.
 *
 * Safety rules it promises (tested by the scenario files under tests/scenarios/):
 *  - Without quorum it decides nothing.
 *  - The active role is taken from a node only when that node surely no longer acts: its lease
 *    expired, the guardian reported it fenced, it confirmed its demotion, or it reported that the
 *    instance failed, each for the current epoch. A node whose lease is valid or unknown keeps it.
 *  - A new active is chosen only while no node holds the role, and gets epoch + 1.
 *  - A planned switchover (assignment.demoting) waits for the holder's DEMOTED report.
 *  - Self-healing (failure records, restarts in place with backoff, bans, failback, drain, pause)
 *    never bends these rules: a restart in place is a new epoch given to the same node after it
 *    reported the failure of the old one.
 * `now_ms` is an input (the leader's wall clock), so backoffs and cooldowns stay pure and
 * replayable; `wake_ms` in the output says when time alone would change a decision.
 */
#ifndef US_DECIDE_H
#define US_DECIDE_H

#include "core/model.h"

/* Ends a reason when only accepting a loss (R12 max_lag, R13 synchronous set) would let a standby
 * be promoted; %s is the service. The API's refusal of a plain switchover looks for it. */
#define US_LOSS_NOTE "`understudy switchover %s --force` accepts the loss"

typedef struct us_decide_input {
    bool has_quorum;
    int64_t now_ms;           /* wall clock, ms since the Unix epoch */
    char leader[US_NAME_MAX]; /* Raft leader ("" = none) */
    int n_nodes;
    us_node nodes[US_MAX_NODES];
    us_node_obs node_obs[US_MAX_NODES]; /* parallel to nodes */
    /* The services, read in place (the caller owns the arrays; n_services entries each). */
    int n_services;
    const us_service_def *defs;
    const us_assignment *asg; /* parallel to defs */
    /* What each node reports about its instance of each service: inst[service * n_nodes + node]
     * (parallel indexes), never NULL (a zeroed us_inst_obs when it reports nothing). Pointers, so
     * that the caller can point at the reports it holds instead of copying n_services x n_nodes
     * of them (a us_inst_obs is 288 bytes). */
    const us_inst_obs *const *inst;
} us_decide_input;

typedef struct us_decision {
    int service; /* index into input defs/asg */
    /* The assignment to commit; next.gen = current gen (the CAS guard). next.release is the kind
     * of release when the decision takes the role from the holder (active changes or a new
     * epoch is given while one was held), else US_RELEASE_NONE. */
    us_assignment next;
} us_decision;

typedef struct us_decide_output {
    int64_t wake_ms; /* earliest now_ms at which a decision may change by time alone; 0 = none */
    int n;
    us_decision *d; /* the caller's array, room for in->n_services decisions */
} us_decide_output;

/* R10: initial placements in flight at once, cluster-wide (Pacemaker's batch-limit bounds its
 * actions the same way). A services file that adds hundreds of services would otherwise have
 * every node start instances in the same instant, and on a small machine that burst delays the
 * lease renewals of the very instances being started, which then fence themselves. A placement is
 * in flight from the decision until its node reports the instance acting (or fails, or dies).
 * Only services that never had an active wait: failovers and restarts never do. */
#define US_DECIDE_PLACE_BATCH 8

/* Fill `out` with one decision per service whose assignment must change. */
void us_decide(const us_decide_input *in, us_decide_output *out);

#endif
