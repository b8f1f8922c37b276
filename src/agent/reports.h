/* reports.h — "what does node X report about its instance of service S", over plain report
 * arrays (pure: no agent state, no I/O).
 *
 * Every node reports each of its instances in its pings (msg.h `us_report`). A peer's report is
 * what its last accepted ping carried; this node's own is built by us_report_make from its
 * instance, the same way for its pings (us_msg_reports_text) as for its own answers. The agent's
 * us_agent_report (agent.h) picks between the two and is the one lookup that the API
 * (GET /v1/status), the metrics, the proxies and the controller use, so that a node and its peers
 * show the same numbers: `restarts` is the running total of standby process restarts, never the
 * backoff counter that starts over after a stable run.
 */
#ifndef US_REPORTS_H
#define US_REPORTS_H

#include <stdbool.h>
#include <stdint.h>

#include "core/model.h"
#include "core/msg.h"

/* What this node keeps about one of its instances: the source of its report. */
typedef struct us_report_source {
    const char *service;
    us_inst_obs obs;
    int pid;          /* 0 = no process */
    bool has_checks;  /* a checker runs: the three numbers below are its */
    int64_t check_ms; /* latency of the last probe, -1 = none yet */
    uint64_t probes, probes_failed;
    int restarts_total; /* standby process restarts since the agent started: only grows */
    const char *restart_cause;
    uint64_t px_epoch; /* the service's current epoch ... */
    int px_open;       /* ... and this node's proxy connections open under it */
} us_report_source;

/* This node's report about one of its instances, as its pings carry it. */
void us_report_make(const us_report_source *src, us_report *out);

/* Does the report say nothing that no report says? No role (US_INST_NONE), no process, no health,
 * cause, failure, probe, restart or proxy connection: a node that holds no role of a service and
 * never ran it. Such reports are left out of pings and lookups (us_agent_own_reports), so a ping
 * carries what a node runs, not one report per service in the cluster (a change of any of 200
 * made every ping 38 KB and its decoding saturated 25 agents). Its epochs (obs.epoch, px_epoch)
 * do not count: a missing report reads as NONE at any epoch. us_instance_silent (instance.h) asks
 * the same of an instance before its report is built: a field added here must be added there. */
bool us_report_says_nothing(const us_report *r);

/* The report about `service` in one node's reports, or NULL. */
const us_report *us_report_find(const us_report *reports, int n, const char *service);

#endif
