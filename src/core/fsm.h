/* fsm.h — the replicated state: nodes, service definitions and assignments, changed only by
 * committed commands.
 *
 * Commands are JSON objects with an "op" (built by the us_cmd_* helpers). Every command is
 * idempotent or guarded: an apply that libraft reports as failed (LEADERSHIPLOST) may still have
 * committed, and the controller will simply re-decide from the state it then sees. Assignment
 * changes are compare-and-set on the assignment's `gen`, so a decision made on stale input is a
 * no-op. Epochs only grow, also across deleting and re-adding a service of the same name.
 */
#ifndef US_FSM_H
#define US_FSM_H

#include <jansson.h>
#include <raft.h>

#include "core/model.h"
#include "core/service.h"

#define US_RETIRED_MAX 64

/* Why the active role moved away from its holder: the category of the release, mapped from the
 * assignment's us_release_kind (us_release_cause). These names are visible to users (metrics
 * labels, stats): they do not change. */
typedef enum {
    US_CAUSE_FAILED = 0,
    US_CAUSE_UNHEALTHY,
    US_CAUSE_FENCED,
    US_CAUSE_LEASE,
    US_CAUSE_AGENT_RESTART,
    US_CAUSE_OTHER,
    US_CAUSE_N,
    US_CAUSE_SWITCHOVER = US_CAUSE_N, /* planned: not a failover cause */
} us_move_cause;

const char *us_move_cause_name(us_move_cause c); /* "failed", "unhealthy", ... "switchover" */

/* Replicated counters of one service (metrics): changed only in apply_assign, so every agent
 * has the same numbers and they survive restarts (snapshots carry them). When the active role
 * is given under a new epoch and an earlier holder is known (the one it was just taken from, or
 * the one it was released from by an earlier command):
 *  - the same node gets it back: a restart in place (also an agent restart given the role again);
 *  - another node gets it after a planned switchover (demotion confirmed): a switchover;
 *  - otherwise a failover, counted under the cause of the release.
 * The initial placement counts as nothing. */
typedef struct us_service_stats {
    uint64_t failovers[US_CAUSE_N];
    uint64_t switchovers;
    uint64_t restarts_in_place;
    /* The role was released and not given again yet: by whom ("" = nothing pending), and why. */
    char released_from[US_NAME_MAX];
    us_move_cause release_cause;
} us_service_stats;

typedef struct us_state {
    uint64_t version; /* bumps on every applied change (for observers) */
    int n_nodes;
    us_node nodes[US_MAX_NODES];
    /* The services, their assignments and counters: parallel arrays of services.n entries,
     * allocated for `cap` (owned: us_state_free, us_state_copy). */
    us_service_set services;
    us_assignment *asg;      /* parallel to services.svc */
    us_service_stats *stats; /* parallel to services.svc */
    /* Parallel too, and local (no command or snapshot carries it; us_state_copy copies it): the
     * state version of the last command that could change service i's definition or assignment
     * (us_state_apply; a restored snapshot's version). An unchanged value means nothing about the
     * service changed, which lets an agent skip a service it has nothing to do with without
     * touching its (large) definition or assignment (instance.c). */
    uint64_t *touched;
    /* Local too: the state version of the last command that could change any definition (a
     * services command; a restored snapshot's version). Unchanged, no definition changed: what
     * an agent keeps from the definitions (notify.c's hooks) need not be read again from 1,000
     * of them after every command. */
    uint64_t defs_v;
    int cap;       /* entries allocated in asg, stats and touched */
    int zeroed;    /* ... of which [0, zeroed) were zeroed when first reserved */
    int n_retired; /* epochs of deleted services, so a re-add continues */
    struct {
        char name[US_NAME_MAX];
        uint64_t epoch;
    } retired[US_RETIRED_MAX];
    uint64_t epoch_floor; /* largest epoch the retired list forgot: new services start above it */
    /* Bounded event history, a ring of events_max entries (this node's `[cluster] events_max`;
     * nodes may keep different numbers, the seqs are the same everywhere): the n_events newest
     * events, event `seq` at events[(seq - 1) % events_max]. Applied commands append events
     * deterministically (the time is the proposing leader's, carried in the command). The ring is
     * allocated on the first event (US_EVENTS_DEFAULT entries unless us_state_set_events_max
     * said otherwise) and owned by the state: us_state_free, us_state_copy. */
    uint64_t event_seq; /* seq of the newest event, 0 = none yet */
    int events_max;     /* ring capacity, 0 = US_EVENTS_DEFAULT */
    int n_events;       /* events kept: the seqs event_seq - n_events + 1 .. event_seq */
    us_event *events;   /* owned; NULL until the first event */
} us_state;

/* Room for n services in services.svc, asg and stats (entries up to n never reserved before are
 * zeroed, the capacity beyond is not touched; services.n is the caller's). 0, or -1
 * (n > US_MAX_SERVICES or out of memory). */
int us_state_reserve(us_state *s, int n);
/* Free what a state owns and zero it. */
void us_state_free(us_state *s);
/* Deep copy into dst (whose old contents are freed). 0, or -1 (out of memory; dst unchanged). */
int us_state_copy(us_state *dst, const us_state *src);
/* Set the ring's capacity (US_EVENTS_MIN..US_EVENTS_LIMIT), keeping the newest events that fit.
 * 0, or -1 (out of range or out of memory; nothing changes). */
int us_state_set_events_max(us_state *s, int max);

/* Result of an apply (the `result` pointer of raft_apply_cb, cast from intptr_t). */
enum { US_APPLY_OK = 0, US_APPLY_NOOP = 1, US_APPLY_BAD = 2 };

typedef void (*us_fsm_changed_cb)(void *data);

typedef struct us_fsm {
    struct raft_fsm raft; /* version 2; data points to this struct */
    us_state state;
    size_t snapshot_bytes;       /* size of the last snapshot taken or restored, 0 = none yet */
    us_fsm_changed_cb on_change; /* called after every applied change */
    void *data;
} us_fsm;

void us_fsm_init(us_fsm *f, us_fsm_changed_cb on_change, void *data);

/* How many log entries a node applies between two snapshots (raft_set_snapshot_threshold), given
 * the size of its last snapshot and its own `spread` (0..US_SNAPSHOT_SPREAD - 1, from its id). A
 * snapshot encodes the whole state, so its cost grows with the state while what it saves (log kept
 * in memory, replayed at start) grows with the entries: the threshold t grows by one entry per
 * US_SNAPSHOT_BYTES_PER_ENTRY bytes of state past US_SNAPSHOT_GROW_FROM (a small state keeps a
 * short log, and its agent a small RSS), and each node takes its snapshot at its own point
 * between t and 1.5 t, so that nodes applying the same log do not all stall at once (64 agents
 * placing 1,000 services spent 7 % of their time in snapshots of ~1 MB taken every ~640 entries,
 * within 256 entries of each other; at 512 bytes per entry, still 10 % of a non-voter's time while
 * placing: one entry per 256 bytes, at most 8,191, was tried and left, its one run of 64 agents the
 * worst of the day). Always below US_SNAPSHOT_THRESHOLD_MAX, which bounds the log a node holds in
 * memory. */
#define US_SNAPSHOT_THRESHOLD_MIN 512
#define US_SNAPSHOT_SPREAD 256
#define US_SNAPSHOT_BYTES_PER_ENTRY 512
#define US_SNAPSHOT_GROW_FROM (256 * 1024)
#define US_SNAPSHOT_THRESHOLD_MAX 4096
unsigned us_snapshot_threshold(size_t snapshot_bytes, unsigned spread);
/* Free the state the FSM owns. */
void us_fsm_close(us_fsm *f);

/* Apply a command to a state directly (used by the FSM and by tests). */
int us_state_apply(us_state *s, const json_t *cmd);

int us_state_find_node(const us_state *s, const char *name);
/* The same, trying index `hint` first (a caller that remembers where a node was). */
int us_state_find_node_from(const us_state *s, const char *name, int hint);
int us_state_find_service(const us_state *s, const char *name);
/* The same, trying index `hint` first (where the service was last time: services keep their
 * places unless a services file changes them, so callers that walk every tick stay linear). */
int us_state_find_service_from(const us_state *s, const char *name, int hint);
/* Does `node` hold the active role of any service? */
bool us_state_holds_active(const us_state *s, const char *node);
/* How many active roles `node` holds, and the least and greatest state version at which they
 * were given or renewed (since_version; 0 and 0 when it holds none). */
int us_state_role_versions(const us_state *s, const char *node, uint64_t *min, uint64_t *max);
/* The same for every node of s->nodes at once (entry k for nodes[k]), in one walk over the
 * services: for callers that ask about every node each heartbeat. */
void us_state_roles_by_node(const us_state *s, int held[US_MAX_NODES], uint64_t min[US_MAX_NODES],
                            uint64_t max[US_MAX_NODES]);
/* A node's role in an assignment: "active", "demoting", "recovering", "restarting", "standby"
 * or "none" (the words of role events). */
const char *us_assignment_role(const us_assignment *a, const char *node);
/* Counting cause of a release of kind `k` (the classification of us_service_stats): a table;
 * NONE, DEMOTED and OTHER count as US_CAUSE_OTHER, SWITCHOVER as US_CAUSE_SWITCHOVER. */
us_move_cause us_release_cause(us_release_kind k);

/* Event `seq` if still kept, else NULL. */
const us_event *us_state_event(const us_state *s, uint64_t seq);
/* Oldest kept event's seq (0 = none). */
uint64_t us_state_first_event(const us_state *s);
json_t *us_event_to_json(const us_event *e);

/* Whole-state encoding (snapshots, debugging). */
json_t *us_state_to_json(const us_state *s);
int us_state_from_json(us_state *s, const json_t *j);

/* us_service_def_to_json / us_service_def_from_json: service.h. */
json_t *us_assignment_to_json(const us_assignment *a);

/* Command builders. Each change a command makes is recorded as an event (us_event) whose time
 * and cause come from us_cmd_stamp (time 0 and a generic cause when unstamped). */
json_t *us_cmd_stamp(json_t *cmd, int64_t time_ms, const char *cause); /* returns cmd */
json_t *us_cmd_node_up(const us_node *n);
/* The same, for an agent that adopted the instances of incarnation `adopts` (a planned restart):
 * if `adopts` is the incarnation registered until now, the node's active roles given to it pass
 * to n->incarnation under their epochs. adopts 0 = us_cmd_node_up. */
json_t *us_cmd_node_up_adopting(const us_node *n, uint64_t adopts);
json_t *us_cmd_node_flags(const char *name, bool leaving, bool removing, bool left);
json_t *us_cmd_services(const us_service_set *set);
json_t *us_cmd_assign(const us_assignment *next); /* CAS on next->gen */
/* Adds where the proposer's state has the command's service ("ix", index >= 0): the apply looks
 * there first and checks the name (a wrong hint costs only a search). Returns cmd. */
json_t *us_cmd_hint(json_t *cmd, int index);
json_t *us_cmd_switchover(const char *service, uint64_t gen, const char *target);
json_t *us_cmd_node_drain(const char *name, bool drained);
json_t *us_cmd_pause(const char *service, bool paused);
/* Clear failure records (bans, restart counts) of `service` on `node` ("" = every node). */
json_t *us_cmd_reset(const char *service, const char *node);
/* switchover --force while `service` has no active: accept losing what only the lost active had
 * (R12/R13, as a reset of every node does) and prefer `target` ("" or NULL: none) as the next. */
json_t *us_cmd_accept_loss(const char *service, const char *target);
/* Record an observation-only event (node liveness, health); e->seq is ignored. */
json_t *us_cmd_event(const us_event *e);

/* JSON helpers. 64-bit values travel as decimal strings (json_int_t is signed); readers accept
 * both forms. A missing string is "", a missing number 0. */
const char *us_json_str(const json_t *o, const char *key);
uint64_t us_json_u64(const json_t *o, const char *key);
json_t *us_u64_json(uint64_t v);

/* Serialize a command into a raft_malloc'ed buffer for raft_apply. 0 or -1. */
int us_cmd_encode(json_t *cmd, struct raft_buffer *buf); /* consumes cmd */

#endif
