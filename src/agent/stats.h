/* stats.h — what this agent process measures itself, for GET /metrics (metrics.h): failover
 * durations (the leader's controller), this node's health probes (check.h observer) and the Raft
 * leader changes it saw. Plain counters and histograms (lib/prom.h); no I/O.
 */
#ifndef US_STATS_H
#define US_STATS_H

#include <stdint.h>

#include "core/model.h"
#include "lib/prom.h"

typedef struct us_metrics {
    /* Leader side: from the decision that released a failed or lost holder until the new active
     * on another node reported ACTIVE (controller.c). */
    us_histogram failover;
    /* This node's health probes, by service (check.h observer). */
    struct us_metrics_check {
        char service[US_NAME_MAX]; /* "" = free slot */
        us_histogram duration;
        uint64_t probes, failures;
    } check[US_MAX_SERVICES];
    /* Raft leaders seen taking over (a new leader id or a new term), sampled every heartbeat. */
    uint64_t leader_changes;
    uint64_t seen_leader_id, seen_leader_term;
    /* Lease renewals asked again within a heartbeat because a majority's grants of the round had
     * not come back (us_lease_reask): one per voter asked. */
    uint64_t renewals_reasked;
} us_metrics;

/* Set up the histograms and observe this process's health probes. */
void us_metrics_init(us_metrics *m);
/* Stop observing probes (before `m` goes away). */
void us_metrics_close(us_metrics *m);
/* Count a leader take-over if (leader_id, term) is new; leader_id 0 = none known. */
void us_metrics_leader_seen(us_metrics *m, uint64_t leader_id, uint64_t term);
/* The probe statistics of `service`; created (replacing the oldest when all slots are used) if
 * `create`, else NULL when there are none. */
struct us_metrics_check *us_metrics_check_slot(us_metrics *m, const char *service, bool create);

#endif
