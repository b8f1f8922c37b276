/* controller.h — what the Raft leader does each heartbeat (controller.c): register agents
 * (incarnations), admit joining nodes, keep the voter count, carry out removals, record what it
 * observes as events, and turn the decision function's output (decide.h) into guarded FSM
 * commands. One batch of commands at a time: the next decision is made on the state those
 * commands produced.
 *
 * The controller owns its bookkeeping (us_controller) and nothing else. Each tick the agent builds
 * a plain view of the cluster (us_cluster_view: the nodes with their liveness and reports, the
 * Raft configuration, the replicated state, the time); the controller acts only through the
 * callbacks of its environment (us_controller_env): it proposes commands and asks for membership
 * changes, which complete through `done` callbacks. It has no I/O and no clock of its own, so a
 * test drives it with fake time and fake peers (tests/unit/test_controller.c).
 */
#ifndef US_CONTROLLER_H
#define US_CONTROLLER_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "config/config.h"
#include "core/fsm.h"
#include "core/lease.h"
#include "core/model.h"
#include "core/msg.h"
#include "lib/index.h"

/* A member's role in the Raft configuration (the agent maps libraft's roles). */
typedef enum { US_MEMBER_SPARE = 0, US_MEMBER_STANDBY, US_MEMBER_VOTER } us_member_role;

#define US_MAX_MEMBERS (2 * US_MAX_NODES)

typedef struct us_view_member {
    uint64_t id;
    us_member_role role;
} us_view_member;

/* A node as the agent sees it through datagrams (a peer; this node is one too). */
typedef struct us_view_node {
    char name[US_NAME_MAX];
    uint64_t id;
    char address[US_ADDR_MAX];
    char api[US_ADDR_MAX];
    char service_host[US_ADDR_MAX]; /* its `[node] service_host`, "" = none */
    bool self;                      /* this node */
    uint64_t inc;         /* incarnation of its last current datagram, 0 = not heard yet */
    us_node_state state;  /* liveness */
    int64_t last_seen_ms; /* monotonic, -1 = never */
    uint64_t dead_inc;    /* its guardian announced that the agent of this incarnation died */
    uint64_t version;     /* its state version as it last granted us a lease, 0 = unknown */
    uint64_t adopts;      /* its agent adopted the instances of this incarnation, 0 = none */
    /* Its instance reports (this node: its own instances), read in place. */
    int n_reports;
    const us_report *reports;
    /* Its guardian's announcements of fenced actives: service, epoch, incarnation. */
    int n_fenced;
    const char (*fenced_service)[US_NAME_MAX];
    const uint64_t *fenced_epoch;
    const uint64_t *fenced_inc;
} us_view_node;

/* What the controller sees of the cluster: built by the agent for each call, read only. */
typedef struct us_cluster_view {
    int64_t now_ms;          /* monotonic clock */
    int64_t now_ns;          /* monotonic clock (failover timing) */
    int64_t wall_ms;         /* wall clock: stamps of commands and events */
    bool leader;             /* this node is the Raft leader */
    bool closing;            /* the agent is closing: do nothing */
    bool has_quorum;         /* a quorum of voters acknowledged our leadership lately */
    const us_state *state;   /* the replicated state */
    int applies_in_flight;   /* proposals not applied yet (ours or earlier ones) */
    bool config_uncommitted; /* a Raft configuration change is not committed yet */
    int n_members;           /* the Raft configuration */
    us_view_member members[US_MAX_MEMBERS];
    int n_nodes; /* the peer table, in its order (indexes stay) */
    us_view_node nodes[US_MAX_NODES];
} us_cluster_view;

/* status 0: done; else an error code of the environment (strerror). */
typedef void (*us_propose_done)(void *arg, int status, int result);
typedef void (*us_change_done)(void *arg, int status);

typedef struct us_controller_env {
    const us_node_config *cfg; /* name, autopilot_grace_ms, timing: read in place */
    void *data;                /* the first argument of every callback below */
    /* Propose a command (consumed); done may be NULL. 0 or an error code. */
    int (*propose)(void *data, json_t *cmd, us_propose_done done, void *arg);
    /* Membership changes, one at a time (libraft's rule). 0 once started (done follows), else an
     * error code (done is not called). transfer: to = 0 lets the agent pick a voter. */
    int (*add)(void *data, uint64_t id, const char *address, us_change_done done, void *arg);
    int (*assign)(void *data, uint64_t id, us_member_role role, us_change_done done, void *arg);
    int (*remove)(void *data, uint64_t id, us_change_done done, void *arg);
    int (*transfer)(void *data, uint64_t to, us_change_done done, void *arg);
    const char *(*strerror)(int rc);
    /* Leader side: what the voters' reports say about this node's lease (lease.h); *revoked
     * (may be NULL): a voter revoked it under its current role(s) while a majority keeps
     * renewing it (us_lease_renewal_due). */
    us_lease_state (*judge_lease)(void *data, const char *node, int64_t now_ms, bool *revoked);
    /* Is this node still the leader? (asked when a change completes) */
    bool (*is_leader)(void *data);
    /* A change completed: run the controller again soon. */
    void (*schedule_reconcile)(void *data);
    /* Call the tick again in delay_ms (a backoff or cooldown of the decisions ends). */
    void (*wake)(void *data, int64_t delay_ms);
    /* A failover finished: `secs` from the decision to the new active's report (metrics). */
    void (*failover)(void *data, double secs);
    /* Wall clock for events recorded when a change completes. */
    int64_t (*wall_ms)(void *data);
} us_controller_env;

typedef struct us_ctl_seen {
    char service[US_NAME_MAX];
    char node[US_NAME_MAX];
    us_health health;
    int restarts;
} us_ctl_seen;

/* A failover being timed: a failed or lost holder was released by our decision at t0_ns; done
 * when another node reports ACTIVE under a later epoch. */
typedef struct us_ctl_timing {
    char service[US_NAME_MAX];
    char from[US_NAME_MAX];
    uint64_t epoch; /* the released holder's */
    int64_t t0_ns;
} us_ctl_timing;

typedef struct us_controller {
    us_controller_env env;
    bool change_in_flight; /* add/assign/remove/transfer */
    int64_t next_transfer_ms;
    bool transfer_failed; /* the last leadership transfer ended with us still leader */
    int64_t leader_since_ms;
    /* What was last recorded as events (so that only changes are), reset when this node becomes
     * leader: node liveness by view node index, health and restarts by name. */
    bool primed;
    us_node_state node[US_MAX_NODES];
    us_ctl_seen *seen; /* grown as pairs of service and node appear (us_controller_free) */
    int n_seen, cap_seen;
    us_ctl_timing timing[US_MAX_SERVICES];
    int n_timing;
    /* The decision function's observations (decide.h: pointers into the reports, or at
     * dec_fenced[service] when a guardian's announcement overrides the holder's report), kept
     * from tick to tick for dec_cap services (us_controller_free). Its output is allocated per
     * decision round and freed after it (a us_decision is 11 KiB). */
    const us_inst_obs **dec_inst; /* dec_cap x US_MAX_NODES entries, used n_services x n_nodes */
    us_inst_obs *dec_fenced;
    int dec_cap;
    /* Where each pair of service and node is in seen (a linear search over 25,000 pairs took
     * most of a tick with 1,000 services on 25 nodes). */
    us_index seen_ix;
    /* A fingerprint of the pairs (services and nodes, in order) of the last walk in which pair
     * number i was seen[i] for every i, 0 = none: while the next walk's pairs are the same, it
     * takes seen[i] without comparing names (the leader walks 64,000 pairs at 1,000 services on
     * 64 nodes after every command, and the comparisons were half of its time). */
    uint64_t pairs_fp;
    /* Per tick, by replicated node index: its view node, and its report about each service
     * (NULL: none), placed through svc_ix (service name -> index in the state). */
    const us_view_node *pv[US_MAX_NODES];
    const us_report *(*rep)[US_MAX_NODES];
    us_index svc_ix;
} us_controller;

/* Once: the environment is copied. */
void us_controller_init(us_controller *c, const us_controller_env *env);
/* Free what the controller allocated. */
void us_controller_free(us_controller *c);
/* This node became leader at now_ms: forget what an earlier leadership recorded. */
void us_controller_became_leader(us_controller *c, int64_t now_ms);
/* A heartbeat or a change: do what the leader must (nothing unless view->leader). */
void us_controller_tick(us_controller *c, const us_cluster_view *view);
/* A join request (msg.h) that passed the agent's checks: add the node to Raft. */
void us_controller_join_request(us_controller *c, const us_cluster_view *view, const char *name,
                                const char *address);
/* The agent stops: hand leadership to another voter (done when libraft finished). No membership
 * change starts after this. 0 once started, 1 when a change is in flight (try again later), else
 * the environment's error code. */
int us_controller_hand_over(us_controller *c, us_change_done done, void *arg);

#endif
