/* agent.h — the agent process: one per node (`understudy agent`). agent.c wires the parts of
 * src/agent/ together on one libuv loop (hub.h holds the state they share):
 *   agent.c       Raft, datagrams, heartbeats and leases (core/lease.h), timers, signals,
 *                 systemd notifications; the callbacks it gives the parts below
 *   instance.c    this node's instances: start/promote/demote/stop them as the assignments say
 *                 (instance.h: its own state and an environment of callbacks)
 *   controller.c  the Raft leader's duties: registrations, joins, removals, decisions
 *                 (controller.h: a view of the cluster in, commands and membership calls out)
 *   proxies.c     one failover-aware proxy per service that declares one (proxies.h)
 *   reports.c     what a node reports about its instances (reports.h)
 *   hub.c         the shared state's queries (hub.h)
 *   agent_api.c   the HTTP API handlers (agent_api.h)
 *   recover.c     `understudy recover`, run without an agent (recover.h)
 *   metrics.c     GET /metrics (metrics.h); stats.c what this process measures (stats.h)
 */
#ifndef US_AGENT_H
#define US_AGENT_H

#include "config/config.h"

/* The exit status after SIGUSR2 (a planned restart: the instances keep running for the next
 * agent). EX_TEMPFAIL: systemd restarts it with RestartForceExitStatus=75. */
#define US_EXIT_RESTART 75

/* Run the agent of this node until it is told to stop; the process's exit status. */
int us_agent_main(const us_node_config *cfg);

#endif
