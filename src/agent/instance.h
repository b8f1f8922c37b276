/* instance.h — this node's instance of each service (instance.c): it follows the replicated
 * assignment and acts as active only under a committed epoch given to this agent's incarnation
 * and while the lease is valid with a reserve.
 *
 * The module owns the instance slots. It reads the replicated state and the node's settings in
 * place, and reaches the rest of the agent only through the callbacks of its environment
 * (us_instances_env), given once at start-up: calls go down, come back through callbacks.
 * Everything runs on the agent's loop; no locks.
 */
#ifndef US_INSTANCE_H
#define US_INSTANCE_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "config/config.h"
#include "core/fsm.h"
#include "core/model.h"
#include "node/check.h"
#include "node/guardian.h"
#include "node/supervisor.h"
#include "node/vip.h"

typedef enum {
    US_PHASE_IDLE = 0, /* nothing runs for this service here */
    US_PHASE_STANDBY,  /* standby (hot: process runs as standby) */
    US_PHASE_PROMOTING,
    US_PHASE_ACTIVE,
    US_PHASE_DEMOTING,
} us_phase;

struct us_instances;

/* This node's instance of one service. */
typedef struct us_instance {
    char service[US_NAME_MAX];
    bool used;
    us_phase phase;
    uint64_t epoch;           /* epoch of the active role being taken/held/given up */
    uint64_t abandoned_epoch; /* never act again under an epoch <= this */
    us_inst_obs report;       /* what we tell the leader */
    us_proc *proc;            /* the service process (group) */
    us_proc *hook;            /* promote/demote hook in progress, or a hot standby's follow hook */
    int64_t restart_after_ms; /* hot standby: do not respawn before this */
    int hook_kind;            /* HOOK_* of instance.c */
    bool fencing;             /* killing everything; publish `pending` once all is gone */
    us_inst_obs pending;
    bool demote_stop_proc; /* planned cold demotion: process first, then the hook */
    bool spawn_fenced;     /* for before_exec of the spawn in progress */
    uint64_t spawn_epoch;
    /* Virtual IPs held while active (a copy: the definition may change or vanish meanwhile). */
    int n_vips_up;
    us_vip vips_up[US_MAX_VIPS];
    bool vips_cleaned;    /* stale VIPs of this service removed since the agent started */
    int announce_left;    /* announcements left in the current burst */
    bool announce_repeat; /* one more burst after announce_repeat_ms */
    /* Planned demotion: proxies hold new connections while open ones finish. */
    bool draining;
    bool adopting; /* adopted from the earlier agent, not yet confirmed by our state and lease */
    int64_t drain_min_ms, drain_until_ms;
    /* Health checks (check.h): run while the process runs as active or hot standby. */
    us_checker *checker;
    int checker_pid;                /* the process the checker watches */
    uint64_t checker_fp;            /* the check settings it runs */
    char fail_cause[US_REASON_MAX]; /* why the instance was reported FAILED */
    /* Hot standby process restarts (local, exponential backoff). */
    int standby_restarts;       /* for the backoff: starts over after a stable run */
    int standby_restarts_total; /* reported: only grows, so the leader sees every restart */
    int64_t proc_started_ms;
    char restart_cause[US_REASON_MAX];
    /* `follow` (hot standbys; report.followed says which epoch succeeded last). */
    uint64_t follow_epoch;            /* the active's epoch the hook in progress follows */
    char follow_node[US_NAME_MAX];    /* ... and its node */
    bool follow_killed;               /* we stopped it (the active changed): not a failure */
    int follow_failures;              /* in a row, for the backoff; 0 after a success */
    int64_t follow_retry_ms;          /* after a failure: not again before this */
    char follow_cause[US_REASON_MAX]; /* the last failure, while it stands: reported unhealthy */
    /* `sync` on the active (report.sync_applied says which sync_gen succeeded last). */
    uint64_t sync_gen;     /* the assignment's sync_gen the hook in progress is for */
    int sync_failures;     /* in a row, for the backoff */
    int64_t sync_retry_ms; /* after a failure: not again before this */
    /* `position` (report.position says what it printed last). */
    us_proc *pos;        /* a run in progress */
    int64_t pos_next_ms; /* the next run, not before */
    uint64_t pos_gen;    /* the assignment's gen when the run in progress started */
    bool pos_warned;     /* a failure was logged: the next one is not (until one succeeds) */
    struct us_instances *owner;
    int state_idx; /* the service's index in the state when last reconciled (a hint) */
    /* 1 + its service's touched (fsm.h) when step() last found it in no role with nothing running
     * or checking: nothing changes for it until a command changes its service, so reconciling
     * skips it (most of the services of a large cluster, on every tick and after every command
     * about another service). 0 = not so. */
    uint64_t idle_at_touched;
} us_instance;

/* What the instances need from the agent. The pointers stay valid while the agent runs; the
 * callbacks get `data`. */
typedef struct us_instances_env {
    uv_loop_t *loop;
    const us_node_config *cfg; /* name, data_dir, timing: read in place */
    const char *cwd;           /* the working directory of services and hooks */
    uint64_t inc;              /* this agent process's incarnation */
    uint64_t adopt_inc;        /* the earlier incarnation whose instances we adopted, 0 = none */
    const us_state *state;     /* the replicated state (fsm.h), read in place */
    us_guardian *guardian;     /* fences what acts as active when the lease runs out */
    void *data;
    /* Is our lease valid at now_ms + reserve_ms? (lease.h) */
    bool (*lease_ok)(void *data, int64_t now_ms, int64_t reserve_ms);
    /* The agent is closing: take up no active role. */
    bool (*closing)(void *data);
    /* This node is the Raft leader (notify hooks of node-less events run there). */
    bool (*is_leader)(void *data);
    /* A report changed that the leader may be waiting for: send heartbeats now. */
    void (*report_now)(void *data);
    /* Something finished (a hook, a process): reconcile again soon (not from within). */
    void (*schedule_reconcile)(void *data);
    /* Open proxied connections to `service` under `epoch`: here / cluster-wide (proxies.c). */
    int (*proxies_open)(void *data, const char *service, uint64_t epoch);
    int (*proxies_open_total)(void *data, const char *service, uint64_t epoch);
} us_instances_env;

typedef struct us_instances us_instances;

/* Once, after the loop exists (the environment is copied); NULL when out of memory. Its timers
 * are closed with the loop's other handles; free it after that with us_instances_free. */
us_instances *us_instances_start(const us_instances_env *env);
void us_instances_free(us_instances *x);

/* Follow the replicated state: start, promote, demote, stop. After every FSM change and tick. */
void us_instances_reconcile(us_instances *x);
void us_instances_guardian_event(us_instances *x, const us_guardian_event *ev);
void us_instances_kill_all(us_instances *x);   /* immediate, for exits */
bool us_instances_busy(us_instances *x);       /* any active/promoting/demoting instance */
bool us_instances_quiet(us_instances *x);      /* no process or hook of ours runs */
void us_instances_reannounce(us_instances *x); /* membership changed: announce active VIPs again */
/* Planned restart (SIGUSR2). Adopt a process group the guardian handed over, left by the agent
 * of incarnation `inc` (whose active roles count as ours until our registration moves them) (its
 * pidfile must prove it: supervisor.h us_proc_adopt), as the active (g->fence) or standby instance
 * under g->epoch. It is left alone (only the lease end stops it) until the replicated state reached
 * `version` (the earlier agent's) and our lease went past `lease_until_ms` (the one it left). */
int us_instances_adopt(us_instances *x, const us_guardian_group *g, uint64_t inc, uint64_t version,
                       int64_t lease_until_ms);
/* No hook, promotion, demotion, drain or fencing in progress. */
bool us_instances_settled(us_instances *x);
/* Exit for a planned restart: keep active and standby processes (and VIPs) running for the
 * guardian and the next agent; kill hooks and whatever is in transition; stop checks. */
void us_instances_detach(us_instances *x);
/* The instances whose reports may say something (hub.c builds this node's reports from them,
 * reports.h), into out[] (US_MAX_SERVICES entries); their number. Those that are not silent
 * (us_instance_silent), those of services for which keep(ctx, state index) says so (a proxy here
 * may have connections), and those of deleted services. An instance that the last reconcile left
 * idle and silent is passed over without reading its slot (a ping round walked all 1,000 slots of
 * every agent). */
int us_instances_speaking(us_instances *x, bool (*keep)(void *ctx, int service_index), void *ctx,
                          const us_instance **out);
/* Does the instance have nothing of its own to report: no role, process, checks, health, cause,
 * failure or restart? Its report then says nothing (reports.h) unless this node's proxy has
 * connections for the service: a cheap test before building the report, for the walk over every
 * service of the cluster that each ping round makes. */
bool us_instance_silent(const us_instance *in);
/* This node's instance of `service`, or NULL. `hint`: the service's index in the state if the
 * caller knows it (found in one step instead of a walk over every slot), else -1. */
const us_instance *us_instance_of(us_instances *x, const char *service, int hint);

#endif
