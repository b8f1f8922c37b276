/* agent.h — the agent process: one per node. Internal header shared by the agent's parts:
 *   agent.c       wiring and lifecycle: Raft, datagrams, heartbeats and leases, signals,
 *                 systemd notifications (sdnotify.h)
 *   instance.c    this node's instances: start/promote/demote/stop them as the assignments say
 *                 (instance.h: its own state and an environment of callbacks)
 *   controller.c  the Raft leader's duties: registrations, joins, removals, decisions
 *                 (controller.h: a view of the cluster in, commands and membership calls out)
 *   agent_api.c   the HTTP API handlers
 *   metrics.c     GET /metrics (metrics.h), read from all of the above
 * Everything runs on one libuv loop; no locks.
 */
#ifndef US_AGENT_H
#define US_AGENT_H

#include <netinet/in.h>
#include <raft.h>
#include <raft/uv.h>
#include <uv.h>

#include "net/api.h"
#include "node/check.h"
#include "config/config.h"
#include "core/fsm.h"
#include "node/guardian.h"
#include "agent/controller.h"
#include "agent/instance.h"
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
typedef struct us_peer {
    char name[US_NAME_MAX];
    uint64_t id;
    char address[US_ADDR_MAX];
    char api[US_ADDR_MAX];
    struct sockaddr_in sa;
    uint64_t inc;      /* incarnation of its last current datagram, 0 = not heard yet */
    uint64_t wire_inc; /* newest incarnation of any authentic datagram: our to_inc for it */
    us_replay replay[US_CHAN_COUNT]; /* per channel (wire.h) */
    int64_t hello_ms;                /* when we last told it our incarnation */
    int64_t last_seen_ms;            /* -1 = never */
    /* Leader side. */
    int64_t ack_ms; /* leader: send time of our latest ping it acknowledged, our term */
    /* Leases (lease.h). As a voter we grant this peer; as a requester it grants us (if it votes).
     */
    us_lease_grantee lease; /* as a voter: what we granted it, whether we revoked it */
    int64_t grant_t0;       /* send time of our latest request it granted, -1 = none */
    uint64_t grant_v;       /* its state version when it granted that request */
    /* What this peer (as a voter) last reported about each peer, by our peer index. */
    us_lease_seen about[US_MAX_NODES];
    int n_reports;
    us_report reports[US_MAX_SERVICES];
    uint64_t
        fenced_epoch[US_MAX_SERVICES]; /* guardian announcements: service, epoch, incarnation */
    uint64_t fenced_inc[US_MAX_SERVICES];
    char fenced_service[US_MAX_SERVICES][US_NAME_MAX];
    int n_fenced;
    uint64_t dead_inc; /* its guardian announced that the agent of this incarnation died */
} us_peer;

typedef struct us_agent {
    us_node_config cfg;
    uv_loop_t *loop;
    uint64_t inc; /* this agent process's incarnation */
    char cwd[PATH_MAX];

    struct raft raft;
    struct raft_io io;
    us_transport transport;
    us_fsm fsm;
    bool raft_started;

    us_net net;
    us_api *api;
    us_guardian *guardian;
    uv_poll_t guardian_poll;
    uv_timer_t tick;
    uv_timer_t reconcile_timer;
    uv_timer_t report_timer; /* an instance report changed: heartbeat now */
    uv_signal_t sig_term, sig_int, sig_hup;

    us_peer peers[US_MAX_NODES];
    int n_peers;
    int self; /* index of this node in peers */

    /* Leases. */
    int64_t lease_until_ms; /* this node may act as active until then (own clock) */
    int64_t started_ms;     /* grants made before a restart are unknown for stale_after */
    uint64_t ping_seq;
    struct {
        int64_t ms;
        uint64_t term;
        bool as_leader;
    } sent[256]; /* by ping round (seq) % 256 */
    bool leader;
    uint64_t leader_term;

    /* Controller (controller.h): the leader's duties, fed a view each tick. */
    us_controller ctl;
    int applies_in_flight; /* proposals not applied yet */
    int64_t next_join_ms;  /* when to ask to join again (send_join) */
    uv_timer_t wake_timer; /* decide again when a backoff or cooldown ends */

    us_instances *instances; /* this node's instances (instance.h) */
    int alive_peers; /* at the last tick: more now means a node came back (re-announce VIPs) */

    struct us_agent_proxy {
        char service[US_NAME_MAX];
        char listen[US_ADDR_MAX];
        us_proxy *proxy;
        bool has_target;
        struct sockaddr_in target;
        uint64_t epoch;
        int64_t retry_ms; /* after a failed start */
    } proxies[US_MAX_SERVICES];

    us_metrics metrics; /* what this process measures (GET /metrics) */
    us_sdnotify sd;     /* systemd readiness, status, watchdog */

    /* Lifecycle. */
    int stopping; /* 0 running, 1 handing over (SIGTERM), 2 closing */
    int64_t stop_deadline_ms;
    int exit_code;
} us_agent;

/* agent.c */
int us_agent_main(const us_node_config *cfg);
void us_agent_schedule_reconcile(us_agent *a);
/* Send heartbeats (with the instance reports) now instead of at the next tick. */
void us_agent_report_now(us_agent *a);
bool us_agent_is_leader(us_agent *a);
us_peer *us_agent_peer(us_agent *a, const char *name);
us_peer *us_agent_peer_by_id(us_agent *a, uint64_t id);
/* What `node` reports about its instance of `service` (reports.h), into *out: this node's own
 * built from its instance as its pings carry it, a peer's from its last ping. False (and *out
 * zeroed) when it reports nothing. The one lookup of the API, the metrics, the proxies and the
 * controller. */
bool us_agent_report(us_agent *a, const char *node, const char *service, us_report *out);
/* Name and API of the current Raft leader; false if none is known. */
bool us_agent_leader(us_agent *a, char name[US_NAME_MAX], char api[US_ADDR_MAX]);
us_node_state us_agent_node_state(us_agent *a, const us_peer *p);
bool us_agent_lease_ok(us_agent *a, int64_t now_ms, int64_t reserve_ms);
/* As far as this agent can tell: the leader has a fresh quorum (leader: acknowledgements; follower:
 * a leader is known and heard from). */
bool us_agent_has_quorum(us_agent *a);
/* Leader only: has a quorum of voters acknowledged our leadership within the grant window? */
bool us_agent_fresh_quorum(us_agent *a, int64_t now_ms);
/* Is the node with this Raft id a voter in our view of the configuration? */
bool us_agent_is_voter(us_agent *a, uint64_t id);
/* Leader side: what the voters' reports say about `p`'s lease (lease.h). */
us_lease_state us_agent_judge_lease(us_agent *a, us_peer *p, int64_t now_ms);

typedef void (*us_apply_done)(void *data, int status, int result);
/* Propose a command (consumed). done may be NULL. 0 or a raft error code. */
int us_agent_apply(us_agent *a, json_t *cmd, us_apply_done done, void *data);

/* proxies.c: one failover-aware proxy per service that declares one */
void us_proxies_reconcile(us_agent *a);
int us_proxies_open(us_agent *a, const char *service, uint64_t epoch);
/* Open proxied connections to `service` under `epoch`, cluster-wide (own + peers' reports). */
int us_proxies_open_total(us_agent *a, const char *service, uint64_t epoch);
void us_proxies_stop_all(us_agent *a);

/* agent_api.c */
void us_agent_api_routes(us_agent *a);
/* Start the API on cfg.api (TLS when configured), with its guard (tokens, Host, Origin, types)
 * and its routes. 0, or -1 with a message in err. */
int us_agent_api_start(us_agent *a, char *err, size_t errlen);

/* Forwarding a change to the leader over the cluster's authenticated RPC (transport.h).
 * A follower serialises a mutating request as
 *   {"method", "path" (target with the query), "content_type", "body", "who": {"token", "peer"}}
 * and the leader runs it with us_agent_api_execute, whose `done` gets the reply
 * {status, content_type, body}, to send back as it is. */
json_t *us_agent_api_forward_request(const us_api_req *r);
int us_agent_api_execute(us_agent *a, const char *request, size_t len, us_api_done done,
                         void *data);
/* Serve changes that followers forward to us over the cluster's RPC (once, after Raft starts). */
void us_agent_rpc_init(us_agent *a);

#endif
