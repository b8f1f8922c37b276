/* model.h — the cluster model shared by config parsing, the replicated state (FSM), the decision
 * function, the controller and the API.
 *
 * Plain fixed-size value types: they can be copied, compared and handed to the pure decision
 * function without ownership questions. Strings that can be long (commands) are fixed buffers too;
 * the parser rejects values that do not fit, naming the limit.
 */
#ifndef US_MODEL_H
#define US_MODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define US_NAME_MAX 64     /* node and service names: [a-z0-9-], at most 63 chars */
#define US_ADDR_MAX 64     /* "host:port" */
#define US_CMD_MAX 1024    /* run / promote / demote command lines */
#define US_REASON_MAX 256  /* human cause of a transition */
#define US_MAX_NODES 16    /* nodes in one cluster */
#define US_MAX_SERVICES 32 /* services in one cluster */

#define US_MAX_VIPS 4    /* virtual IPs per service */
#define US_IFNAME_MAX 16 /* IFNAMSIZ */

typedef enum { US_STANDBY_COLD = 0, US_STANDBY_HOT = 1 } us_standby_mode;

/* A virtual IP that follows the active instance ("198.18.0.100/24 dev eth0"). */
typedef struct us_vip {
    int family;              /* AF_INET or AF_INET6 */
    uint8_t addr[16];        /* network byte order; 4 bytes used for IPv4 */
    int prefix;              /* 0..32 or 0..128 */
    char dev[US_IFNAME_MAX]; /* interface name */
    char text[80];           /* as the operator wrote it, for messages and the API */
} us_vip;

/* One [service NAME] section of a services file: what the operator declared. */
typedef struct us_service_def {
    char name[US_NAME_MAX];
    char run[US_CMD_MAX];     /* started with /bin/sh -c */
    char promote[US_CMD_MAX]; /* "" = no hook */
    char demote[US_CMD_MAX];  /* "" = no hook */
    us_standby_mode standby;
    int standbys;                          /* standby instances to keep, >= 0 */
    int n_nodes;                           /* 0 = every node is eligible */
    char nodes[US_MAX_NODES][US_NAME_MAX]; /* eligible nodes, most preferred first */
    int hook_timeout_ms;                   /* promote/demote time limit (default 10000) */
    int stop_timeout_ms; /* SIGTERM -> SIGKILL grace when stopping (default 5000) */
    /* Virtual IPs: added on the active after promotion, removed on demotion and everywhere else. */
    int n_vips;
    us_vip vips[US_MAX_VIPS];
    int announce_count;       /* gratuitous ARP / NA burst at takeover (default 3) */
    int announce_interval_ms; /* spacing within a burst (default 100) */
    int announce_repeat_ms;   /* one more burst this long after takeover (default 3000; 0 = none) */
    /* Failover-aware proxy: every agent listens on proxy_listen and forwards to the active. */
    char proxy_listen[US_ADDR_MAX]; /* "IPv4:port", "" = no proxy */
    int proxy_port;                 /* backend port on the active node */
    char backend_host[US_ADDR_MAX]; /* "" = the host of the active node's cluster address */
    int hold_ms;                    /* how long a new connection may wait for an active (5000) */
    int drain_ms;                   /* planned switchover: open connections may finish (10000) */
    int max_conns;                  /* connection limit per proxy and node (4096) */
} us_service_def;

typedef struct us_service_set {
    int n;
    us_service_def svc[US_MAX_SERVICES];
} us_service_set;

/* A cluster member as recorded in the replicated state. */
typedef struct us_node {
    char name[US_NAME_MAX];
    uint64_t id;               /* Raft server id (us_node_id(name)) */
    char address[US_ADDR_MAX]; /* cluster traffic: Raft over TCP, agent datagrams over UDP */
    char api[US_ADDR_MAX];     /* HTTP API */
    uint64_t incarnation;      /* random id of the agent process that registered last; 0 = never */
    bool voter;
    bool leaving;  /* being removed or stopped for maintenance: no new active roles */
    bool removing; /* `understudy node remove`: leave the Raft configuration once idle */
    bool left;     /* removed from the cluster */
} us_node;

/* The replicated placement of one service. Changed only through FSM commands guarded by `gen`. */
typedef struct us_assignment {
    char service[US_NAME_MAX];
    uint64_t gen;   /* bumps on every change: compare-and-set guard of every command */
    uint64_t epoch; /* fencing token: bumps each time the active role is given to a node */
    char active[US_NAME_MAX]; /* "" = no active */
    uint64_t active_inc;      /* incarnation of the agent the active role was given to */
    bool demoting;            /* planned switchover: the active must demote and confirm */
    char target[US_NAME_MAX]; /* switchover target, "" = best candidate */
    int n_standbys;
    char standbys[US_MAX_NODES][US_NAME_MAX];
    char reason[US_REASON_MAX]; /* cause of the last change */
    uint64_t since_version;     /* state version at which the active role was given (lease.h) */
} us_assignment;

/* ---- Observations: what the leader currently knows; local, not replicated. ---- */

typedef enum {
    US_NODE_ALIVE = 0, /* heard from recently */
    US_NODE_SUSPECT,   /* missed some heartbeats */
    US_NODE_DEAD,      /* silent longer than the dead threshold */
    US_NODE_LEFT,      /* removed */
} us_node_state;

typedef enum {
    US_LEASE_VALID = 0, /* the node's lease may still run: it may be acting */
    US_LEASE_UNKNOWN,   /* new leader still inside its wait: treat as possibly valid */
    US_LEASE_EXPIRED,   /* surely expired (with drift margin): the node no longer acts */
} us_lease_state;

typedef struct us_node_obs {
    us_node_state state;
    us_lease_state lease;
    int64_t last_seen_ms; /* age of the last contact, -1 = never */
} us_node_obs;

typedef enum {
    US_INST_NONE = 0, /* nothing reported */
    US_INST_STANDBY,  /* running (hot) or ready (cold) as standby */
    US_INST_ACTIVE,   /* acting as active under `epoch` */
    US_INST_DEMOTED,  /* confirmed it stopped acting under `epoch` (switchover or self-demotion) */
    US_INST_FAILED,   /* the instance failed under `epoch` and does not act */
    US_INST_FENCED,   /* the guardian killed it under `epoch` (agent dead or lease lost) */
} us_inst_state;

typedef struct us_inst_obs {
    us_inst_state state;
    uint64_t epoch;  /* which epoch the report is about */
    int exit_status; /* for FAILED: exit status, or 128+signal */
} us_inst_obs;

const char *us_node_state_name(us_node_state s);
const char *us_lease_state_name(us_lease_state s);
const char *us_inst_state_name(us_inst_state s);

/* Deterministic Raft id for a node name (never 0). */
uint64_t us_node_id(const char *name);

/* Is `name` a valid node/service name: [a-z0-9-], 1..63 chars? */
bool us_name_valid(const char *name);

/* Bounded copy that always terminates; returns false if src did not fit. */
bool us_strlcpy(char *dst, const char *src, size_t size);

#endif
