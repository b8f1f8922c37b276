/* metrics.h — Prometheus metrics of the agent: GET /metrics in the text exposition format 0.0.4.
 *
 * Every agent answers from its own view: the replicated state (the same on every agent, including
 * the failover, switchover and restart-in-place counters of fsm.h), what it observes of the nodes
 * and instances, and what this process measures itself (probe and failover durations, proxy
 * connections, Raft, the process). docs/metrics.md lists every metric.
 *
 * Names carry the `understudy_` prefix (process_* for the standard process metrics), base units
 * (seconds, bytes), counters end in `_total`; every family has HELP and TYPE lines and label
 * values are escaped (\\, \", \n). The exposition helpers below are public for the unit tests.
 */
#ifndef US_METRICS_H
#define US_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "net/api.h"
#include "core/model.h"

/* ---- exposition text ---- */

/* A growing text buffer; after an allocation failure `oom` is set and further output dropped. */
typedef struct us_mtext {
    char *buf;
    size_t len, cap;
    bool oom;
} us_mtext;

void us_mtext_free(us_mtext *t);
void us_mtext_printf(us_mtext *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* "# HELP name help" (help escaped: \\ and \n) and "# TYPE name type". */
void us_mtext_family(us_mtext *t, const char *name, const char *type, const char *help);
/* "name{k1="v1",k2="v2"} value". `labels`: alternating keys and values, NULL-terminated (NULL
 * itself = no labels). Values are escaped; NaN and infinities are written as Prometheus does. */
void us_mtext_sample(us_mtext *t, const char *name, const char *const *labels, double value);

/* Write `value` escaped for a label value into out (always terminated, cut if too small).
 * Returns the length the escaped text needs (like snprintf). */
size_t us_metrics_escape(char *out, size_t size, const char *value);
/* A sample value as Prometheus reads it: shortest text that reads back as the same double. */
void us_metrics_value(char *out, size_t size, double v);

/* ---- histograms ---- */

#define US_HIST_MAX 16 /* upper bounds per histogram, +Inf not counted */

typedef struct us_histogram {
    int n;
    double le[US_HIST_MAX];       /* upper bounds, increasing */
    uint64_t bucket[US_HIST_MAX]; /* observations <= le[i] and > le[i-1] (not cumulative) */
    uint64_t count;
    double sum;
} us_histogram;

void us_histogram_init(us_histogram *h, const double *le, int n);
void us_histogram_observe(us_histogram *h, double v);
/* NAME_bucket{labels..., le} (cumulative, "+Inf" last), NAME_sum, NAME_count. */
void us_mtext_histogram(us_mtext *t, const char *name, const char *const *labels,
                        const us_histogram *h);

/* ---- what this agent process measures ---- */

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
} us_metrics;

/* Set up the histograms and observe this process's health probes. */
void us_metrics_init(us_metrics *m);
/* Stop observing probes (before `m` goes away). */
void us_metrics_close(us_metrics *m);
/* Count a leader take-over if (leader_id, term) is new; leader_id 0 = none known. */
void us_metrics_leader_seen(us_metrics *m, uint64_t leader_id, uint64_t term);

/* GET /metrics; data = the us_agent. */
void us_metrics_http(us_api_req *r, void *data);

#endif
