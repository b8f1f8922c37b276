/* metrics.h — Prometheus metrics of the agent: GET /metrics in the text exposition format 0.0.4.
 *
 * Every agent answers from its own view: the replicated state (the same on every agent, including
 * the failover, switchover and restart-in-place counters of fsm.h), what it observes of the nodes
 * and instances, and what this process measures itself (probe and failover durations, proxy
 * connections, Raft, the process). docs/metrics.md lists every metric.
 *
 * Names carry the `understudy_` prefix (process_* for the standard process metrics), base units
 * (seconds, bytes), counters end in `_total`; every family has HELP and TYPE lines and label
 * values are escaped (\\, \", \n): lib/prom.h writes the text.
 */
#ifndef US_METRICS_H
#define US_METRICS_H

#include "net/api.h"

/* GET /metrics; data = the us_agent. */
void us_metrics_http(us_api_req *r, void *data);

#endif
