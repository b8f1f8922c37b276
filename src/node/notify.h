/* notify.h — per-service notify hooks (`notify = COMMAND` in a services file): the agent runs the
 * command once for each event of the replicated history (fsm.h) that this node reports, strictly in
 * event order and one at a time.
 *
 * Which events of service S run S's hook on this node:
 *  - those whose `node` is this node (role, health, restart, reset ...);
 *  - those without a node (config, pause) only on the node that is the Raft leader when the event
 *    arrives, so that each runs once in the cluster.
 * Only events recorded after this agent started (by the recording leader's wall clock) are run:
 * history replayed from the Raft log or a snapshot is not; nor do hooks still queued when the
 * agent stops (us_notify_stop). The command is taken from S's definition when the event arrives
 * (so the removal of S still runs the hook S had).
 *
 * Order: one queue for every service of this agent, by event seq. The next hook starts once the
 * previous one exited, or was killed (its whole process group) after the service's
 * notify_timeout. At most 256 events wait; beyond that the oldest are dropped and the
 * agent log names each one.
 *
 * A hook runs `/bin/sh -c COMMAND` in the agent's working directory, output appended to
 * DATA_DIR/logs/SERVICE.notify.log, stdin the event as one JSON object as GET /v1/events gives
 * it (seq, time_ms, time, kind, service, node, from, to, cause), and in its environment
 * UNDERSTUDY_EVENT_SEQ, _TIME (ISO 8601 UTC with ms), _TIME_MS, _KIND, _FROM, _TO, _CAUSE, _NODE
 * (the event's node, may be empty), UNDERSTUDY_SERVICE, UNDERSTUDY_NODE (this node),
 * UNDERSTUDY_EPOCH (the service's epoch when the hook starts), UNDERSTUDY_ROLE (this node's role
 * then: active|standby|none) and UNDERSTUDY_DATA_DIR. Its exit status is only logged.
 *
 * One agent per process: the queue is process state.
 */
#ifndef US_NOTIFY_H
#define US_NOTIFY_H

#include <stdbool.h>
#include <uv.h>

#include "core/fsm.h"

/* What the hooks need from the agent, given once (us_notify_init); the pointers must stay valid
 * for as long as the agent runs. */
typedef struct us_notify_env {
    uv_loop_t *loop;
    const char *node;      /* this node's name */
    const char *data_dir;  /* DATA_DIR (logs/, run/) */
    const char *cwd;       /* the hooks' working directory */
    const us_state *state; /* the replicated state (fsm.h), read in place */
    /* Is this node the Raft leader now? (events without a node are the leader's to report) */
    bool (*is_leader)(void *data);
    void *data;
} us_notify_env;

/* Once, before the first us_notify_pump: the environment is copied. */
void us_notify_init(const us_notify_env *env);

/* Take in the events that arrived since the last call and start the next hook if none runs.
 * Cheap when nothing is new; never blocks. The first call only notes where the history is: what
 * it holds then happened before us. */
void us_notify_pump(void);

/* The agent is closing: queued hooks are dropped (and the log says how many); a running one may
 * finish for 1.5 s, then its process group is killed. No hook starts after this. */
void us_notify_stop(void);

/* No hook of ours runs. */
bool us_notify_quiet(void);

#endif
