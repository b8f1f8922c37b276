/* hub.h — the agent's state, shared by its parts, and the queries on it.
 *
 * One us_agent per process. agent.c (agent.h) builds and drives it: Raft, datagrams, heartbeats,
 * leases, timers, signals. The parts below it never call back up into agent.c: the instances
 * (instance.h) and the controller (controller.h) hear only their own environments of callbacks,
 * the proxies (proxies.h) and the reports (reports.h) are plain state and functions; the readers
 * above it (agent_api.h, metrics.h) use only the state and the queries declared here (hub.c),
 * which read the state and libraft's and never call the wiring.
 * Everything runs on one libuv loop; no locks.
 */
#ifndef US_HUB_H
#define US_HUB_H

#include <netinet/in.h>
#include <raft.h>
#include <raft/uv.h>
#include <uv.h>

#include "net/api.h"
#include "node/check.h"
#include "config/config.h"
#include "core/fanout.h"
#include "core/fsm.h"
#include "node/guardian.h"
#include "agent/controller.h"
#include "agent/instance.h"
#include "agent/proxies.h"
#include "agent/reports.h"
#include "agent/stats.h"
#include "core/model.h"
#include "core/msg.h"
#include "net/net.h"
#include "node/proxy.h"
#include "node/sdnotify.h"
#include "node/supervisor.h"
#include "net/transport.h"
#include "node/vip.h"

/* Another agent (or this one), as seen through datagrams. Keyed by name. */
/* Why a follower lowered its election timeout (agent.c, hasten_election). */
typedef enum us_hasten_why {
    US_HASTEN_NONE,
    US_HASTEN_DEAD,         /* the leader's guardian announced that its agent died */
    US_HASTEN_SILENT,       /* the leader is silent and an active role is at stake */
    US_HASTEN_STEPPED_DOWN, /* the leader is heard, but its pings say that it no longer leads */
} us_hasten_why;

typedef struct us_peer {
    char name[US_NAME_MAX];
    uint64_t id;
    int node_idx; /* where it was in the state's nodes (a hint: us_state_find_node_from) */
    char address[US_ADDR_MAX];
    char api[US_ADDR_MAX];
    char service_host[US_ADDR_MAX]; /* its `[node] service_host` (its pings say), "" = none */
    struct sockaddr_in sa;
    uint64_t inc;      /* incarnation of its last current datagram, 0 = not heard yet */
    uint64_t wire_inc; /* newest incarnation of any authentic datagram: our to_inc for it */
    us_replay replay[US_CHAN_COUNT]; /* per channel (wire.h) */
    int64_t hello_ms;                /* when we last told it our incarnation */
    int64_t last_seen_ms;            /* -1 = never */
    /* Fanout (core/fanout.h). What its last ping said: that it votes, and how soon its next
     * regular ping to us follows ("iv", 0 = a heartbeat): its silence bounds stretch by as much. */
    bool votes_claim;
    int interval_ms;
    uint64_t pings_rx;      /* pings from it (addressed to us) since we started */
    uint64_t rep_acked_gen; /* the generation of our reports it has (agent.c), 0 = none */
    int64_t rep_sent_ms;    /* when a ping to it last carried our reports */
    us_rep_run rep_run;     /* which ping rounds carried which generation (fanout.h) */
    bool reads_brief;       /* its pings say it reads brief reports ("rb", msg.h) */
    bool slow;              /* we ping it every few heartbeats only (two non-voters) */
    bool ping_soon;         /* include it in our next ping round whatever its period */
    /* Leader side. */
    int64_t ack_ms; /* leader: send time of our latest ping it acknowledged, our term */
    /* Follower side: the commit index this peer announced as Raft leader ("ci" of its pings, only
     * those addressed to this incarnation), in which term, and when it arrived (-1 = never). */
    uint64_t leader_ci;
    uint64_t leader_ci_term;
    int64_t leader_ci_ms;
    /* Its agent's pings without "ci" in a row since its last with one, or since it became our
     * leader (track_leadership): a leader that pings without it no longer leads. */
    int noci_pings;
    /* Leases (lease.h). As a voter we grant this peer; as a requester it grants us (if it votes).
     */
    us_lease_grantee lease;   /* as a voter: what we granted it, whether we revoked it */
    us_lease_granter granter; /* as a requester: its grants of our requests */
    uint64_t grant_v;         /* its state version with the latest of them (granter.t0) */
    /* What this peer (as a voter) last reported about each peer, by our peer index. */
    us_lease_seen about[US_MAX_NODES];
    int n_reports;
    int n_fenced;
    uint64_t dead_inc;  /* its guardian announced that the agent of this incarnation died */
    uint64_t adopt_inc; /* its agent adopted the instances of this incarnation (planned restart) */
    /* Large arrays last: only their first n_reports / n_fenced entries are ever written or read,
     * so pages of a peer that reports little stay untouched (peer_add clears what precedes). */
    us_report reports[US_MSG_REPORTS_MAX];
    uint64_t
        fenced_epoch[US_MAX_SERVICES]; /* guardian announcements: service, epoch, incarnation */
    uint64_t fenced_inc[US_MAX_SERVICES];
    char fenced_service[US_MAX_SERVICES][US_NAME_MAX];
} us_peer;

typedef struct us_agent {
    us_node_config cfg;
    uv_loop_t *loop;
    uint64_t inc; /* this agent process's incarnation */
    /* Planned restart (SIGUSR2, docs/operations.md): the incarnation whose instances this agent
     * adopted from the guardian it left behind, 0 = none. */
    uint64_t adopt_inc;
    bool guardian_attached; /* a->guardian is one an earlier agent left, not adopted yet */
    char cwd[PATH_MAX];

    struct raft raft;
    struct raft_io io;
    us_transport transport;
    us_fsm fsm;
    bool raft_started;
    bool net_started;

    us_net net;
    us_api *api;
    us_guardian *guardian;
    uv_poll_t guardian_poll;
    uv_timer_t tick;
    uv_timer_t reconcile_timer;
    uv_timer_t report_timer; /* an instance report changed: heartbeat now */
    uv_timer_t revoke_timer; /* a grant of ours goes stale before the next heartbeat: report then */
    uv_signal_t sig_term, sig_int, sig_hup;

    us_peer peers[US_MAX_NODES];
    int n_peers;
    int self;           /* index of this node in peers */
    uint64_t peers_gen; /* grows when a peer is added or its address changes */
    /* What the peer table and the guardian were last brought up to date with (fingerprints): an
     * apply that changed neither costs no walk and no message to the guardian. */
    uint64_t synced_nodes_fp, synced_peers_gen, guardian_peers_fp;
    /* us_agent_role_versions' table, made once per state version (us_state_roles_by_node). */
    struct {
        bool valid;
        uint64_t version;
        int held[US_MAX_NODES];
        uint64_t min[US_MAX_NODES], max[US_MAX_NODES];
    } roles;

    /* Leases. */
    int64_t lease_until_ms; /* this node may act as active until then (own clock) */
    bool lease_short;       /* it had less than demote_before left at the last tick (logged) */
    uint64_t own_roles_v;   /* our roles_v (model.h) when we last applied a change to it */
    int base_nice;          /* the process's nice value at start: its children's */
    int nice;               /* the loop thread's now (follow_voter_priority) */
    bool nice_refused;      /* the system refused a change: not tried again */
    int64_t tick_ms;        /* when the last heartbeat tick ran */
    uv_timer_t reask_timer; /* renewals asked again within the heartbeat (reask_renewals) */
    int64_t round_ms;       /* when the heartbeat's renewals were sent, -1 = none to re-ask */
    int reasks;             /* re-asks of that round so far */
    int64_t started_ms;     /* grants made before a restart are unknown for stale_after */
    uint64_t ping_seq;
    uint64_t ticks;              /* heartbeats so far: the slow peers' turns (us_fanout_slow_due) */
    uint64_t rep_gen;            /* our instance reports' generation: it grows when they change */
    unsigned snapshot_threshold; /* as last set (us_snapshot_threshold), 0 = the initial one */
    struct {
        int64_t ms;
        uint64_t term;
        bool as_leader;
    } sent[256]; /* by ping round (seq) % 256 */
    bool leader;
    uint64_t leader_term;
    uint64_t ready_term; /* as leader: a barrier of this term has applied (us_agent_consistency) */
    bool barrier_in_flight;
    uv_timer_t commit_timer; /* as leader: a command applied, tell the followers (commit_barrier) */
    uint64_t commit_told_v;  /* as leader: the FSM version the last commit barrier followed */
    bool commit_in_flight;

    /* Controller (controller.h): the leader's duties, fed a view each tick. */
    us_controller ctl;
    int applies_in_flight; /* proposals not applied yet */
    int64_t next_join_ms;  /* when to ask to join again (send_join) */
    uv_timer_t wake_timer; /* decide again when a backoff or cooldown ends */

    us_instances *instances; /* this node's instances (instance.h) */
    int alive_peers; /* at the last tick: more now means a node came back (re-announce VIPs) */

    us_proxies proxies; /* this node's proxies (proxies.h) */

    /* The Raft leader's agent is dead (its guardian announced it), the leader went silent while
     * an active role is at stake, or it says that it no longer leads (hasten_when_leaderless): our
     * election timeout is lowered until another leader is known, hasten_until_ms passes, or
     * (silent, stepped down) we hear it lead again (hasten_election). */
    raft_id hasten_dead;      /* the lost leader's Raft id, 0 = not lowered */
    int64_t hasten_until_ms;  /* restore the configured timeout by then at the latest */
    us_hasten_why hasten_why; /* why it was lowered */
    raft_id known_leader;     /* the Raft leader at the last tick (track_leadership) */

    us_metrics metrics; /* what this process measures (GET /metrics) */
    us_sdnotify sd;     /* systemd readiness, status, watchdog */
    /* The STATUS line's list of this node's active services, rebuilt at most once a second
     * after the state changed (sd_update: the list walks every assignment, 1,000 of them 10 KB
     * apart, and sd_update runs after every command and tick). */
    struct {
        uint64_t v;    /* state version it was built at */
        int64_t at_ms; /* when, 0 = never */
        char text[224];
    } sd_active;

    /* Lifecycle. */
    int stopping;    /* 0 running, 1 handing over (SIGTERM), 2 closing */
    bool restarting; /* SIGUSR2: leave the instances to the guardian and the next agent */
    int64_t restart_deadline_ms;
    bool restart_transfer_asked;
    int64_t stop_no_leader_ms; /* SIGTERM hand-over: since when no leader is known (0: one is) */
    bool close_announced;      /* the actives killed on the way out announced as fenced */
    bool close_transfer_asked; /* on the way out, leadership handed to another voter */
    bool restart_released;     /* the proxies' listening sockets went to the guardian */
    int restart_passed;
    int64_t restart_ping_ms; /* the last renewal round before exiting, 0 = not sent yet */
    uv_signal_t sig_usr2;
    int64_t stop_deadline_ms;
    int exit_code;
} us_agent;

/* ---- queries (hub.c) ---- */

bool us_agent_is_leader(us_agent *a);
us_peer *us_agent_peer(us_agent *a, const char *name);
us_peer *us_agent_peer_by_id(us_agent *a, uint64_t id);
/* What `node` reports about its instance of `service` (reports.h), into *out (hint: the service's
 * index in the state, or -1; us_instance_of): this node's own
 * built from its instance as its pings carry it, a peer's from its last ping. False (and *out
 * zeroed) when it reports nothing. The one lookup of the API, the metrics, the proxies and the
 * controller. */
bool us_agent_report(us_agent *a, const char *node, const char *service, int hint, us_report *out);
/* This node's report about its instance `in`, as its pings carry it. */
void us_agent_own_report(us_agent *a, const us_instance *in, us_report *out);
/* This node's reports about its instances, those that say something (us_report_says_nothing):
 * what its pings carry, into out (room for US_MAX_SERVICES); returns how many. */
int us_agent_own_reports(us_agent *a, us_report *out);
/* Name and API of the current Raft leader; false if none is known. */
bool us_agent_leader(us_agent *a, char name[US_NAME_MAX], char api[US_ADDR_MAX]);
us_node_state us_agent_node_state(us_agent *a, const us_peer *p);
/* us_state_role_versions of `p` in our state, from a table made once per state version. */
int us_agent_role_versions(us_agent *a, const us_peer *p, uint64_t *min, uint64_t *max);
bool us_agent_lease_ok(us_agent *a, int64_t now_ms, int64_t reserve_ms);
/* As far as this agent can tell: the leader has a fresh quorum (leader: acknowledgements; follower:
 * a leader is known and heard from). */
bool us_agent_has_quorum(us_agent *a);
/* Leader only: has a quorum of voters acknowledged our leadership within the grant window? */
bool us_agent_fresh_quorum(us_agent *a, int64_t now_ms);
/* The voters of our view of the Raft configuration, in its order, into out (NULL for a voter we
 * know no peer of); their number. */
int us_agent_voters(us_agent *a, us_peer *out[US_MAX_NODES]);
/* Is the node with this Raft id a voter in our view of the configuration? */
bool us_agent_is_voter(us_agent *a, uint64_t id);
/* Open proxied connections to `service` under `epoch`, cluster-wide (own + peers' reports). */
int us_agent_proxies_open_total(us_agent *a, const char *service, uint64_t epoch);

/* Whether this agent's replicated state is current (docs/api.md, "Consistency"): caught up
 * only when, in this incarnation, it has heard from the current Raft leader within an election
 * timeout and has applied everything that leader said it had committed; the leader itself once a
 * barrier of its term has applied and a majority of voters acknowledged it within an election
 * timeout. */
typedef struct us_consistency {
    bool stale;
    char reason[256];         /* why it is stale; "" when caught up */
    char leader[US_NAME_MAX]; /* "" = none known */
    bool is_leader;
    uint64_t term;
    uint64_t applied;   /* Raft index applied to our state */
    bool has_commit;    /* the leader's commit index is known (ours, as leader) */
    uint64_t commit;    /* ... and is this */
    int64_t contact_ms; /* ms since the leader was last heard (as leader: since a majority
                           acknowledged it); -1 = never in this incarnation */
} us_consistency;
void us_agent_consistency(us_agent *a, int64_t now_ms, us_consistency *out);

typedef void (*us_apply_done)(void *data, int status, int result);
/* Propose a command (consumed). done may be NULL. 0 or a raft error code. */
int us_agent_apply(us_agent *a, json_t *cmd, us_apply_done done, void *data);

#endif
