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

#define US_STR_(x) #x
#define US_STR(x) US_STR_(x) /* a number macro as a string literal, for messages */

#define US_NAME_MAX 64    /* node and service names: [a-z0-9-], at most 63 chars */
#define US_ADDR_MAX 64    /* "host:port" */
#define US_CMD_MAX 1024   /* run / promote / demote command lines */
#define US_REASON_MAX 256 /* human cause of a transition */
/* Cluster size (docs/architecture.md, "Limits"): 3 or 5 voters, the rest non-voting members.
 * Arrays by node stay fixed (a node list of 64 names is 4 KiB); arrays by service are allocated
 * for the services there are (us_service_set, us_state), so 1,000 services cost nothing until
 * defined. */
#define US_MAX_NODES 64      /* nodes in one cluster */
#define US_MAX_SERVICES 1000 /* services in one cluster */

#define US_USER_MAX 33 /* user and group names: at most 32 characters */
#define US_MAX_ENV 16  /* `env` assignments per service */
#define US_ENV_MAX 256 /* one "KEY=VALUE", terminator included */

#define US_LOG_MAX_DEFAULT ((int64_t)10 * 1024 * 1024)
#define US_LOG_KEEP_DEFAULT 3

#define US_MAX_VIPS 4    /* virtual IPs per service */
#define US_IFNAME_MAX 16 /* IFNAMSIZ */

typedef enum { US_STANDBY_COLD = 0, US_STANDBY_HOT = 1 } us_standby_mode;

#define US_MAX_CHECKS 4 /* health checks per service */
#define US_PATH_MAX 256 /* HTTP check path (with query) */

typedef enum { US_CHECK_HTTP = 0, US_CHECK_TCP, US_CHECK_EXEC } us_check_kind;

/* One `check =` line: "http://127.0.0.1:8080/healthz", "tcp://127.0.0.1:5432" or "exec:CMD". */
typedef struct us_check_def {
    us_check_kind kind;
    char text[US_CMD_MAX];  /* as the operator wrote it (messages, API) */
    char host[US_ADDR_MAX]; /* http/tcp: IPv4 dotted quad */
    int port;               /* http/tcp: 1..65535 */
    char path[US_PATH_MAX]; /* http: path and query, "/" when the URL has none */
} us_check_def;

/* exec: the command, run with /bin/sh -c in the agent's working directory: the text after
 * "exec:" and blanks (read from the text rather than kept twice: 4 KiB less per service);
 * "" for the other kinds. */
const char *us_check_cmd(const us_check_def *c);

/* What a failed active instance leads to (see docs/decisions.md). */
typedef enum { US_ON_FAILURE_FAILOVER = 0, US_ON_FAILURE_RESTART = 1 } us_on_failure;

/* A virtual IP that follows the active instance ("198.18.0.100/24 dev eth0"). */
typedef struct us_vip {
    int family;              /* AF_INET or AF_INET6 */
    uint8_t addr[16];        /* network byte order; 4 bytes used for IPv4 */
    int prefix;              /* 0..32 or 0..128 */
    char dev[US_IFNAME_MAX]; /* interface name */
    char text[80];           /* as the operator wrote it, for messages and the API */
} us_vip;

/* One [service NAME] section of a services file: what the operator declared. Every field is a
 * row of core/service.c (its key, JSON member, limits and default). */
typedef struct us_service_def {
    char name[US_NAME_MAX];
    char run[US_CMD_MAX];     /* started with /bin/sh -c */
    char promote[US_CMD_MAX]; /* "" = no hook */
    char demote[US_CMD_MAX];  /* "" = no hook */
    /* Hot standbys run it before they count as ready: when they start and whenever the active
     * changes (new node or epoch), to point their replication at it (docs/databases.md). */
    char follow[US_CMD_MAX]; /* "" = none */
    int follow_timeout_ms;   /* time limit of one run (default 60000) */
    /* Prints a number that grows with the data the node has (an LSN, a replication offset): run
     * with the checks on the active and hot standbys; the freshest standby is promoted first. */
    char position[US_CMD_MAX]; /* "" = none */
    int64_t max_lag; /* a standby further behind the lost active's last position is not promoted
                        (-1 = no limit) */
    /* Synchronous replication (R13): keep this many standbys in a replicated synchronous set,
     * tell the active through `sync`; only a member of the set may be promoted. */
    int synchronous; /* 0 = off */
    char
        sync[US_CMD_MAX]; /* run on the active with UNDERSTUDY_SYNC_STANDBYS when the set changes */
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
    int max_per_source;             /* ... from one client address (256; 0 = max_conns) */
    int idle_ms;                    /* close a connection idle this long (1h; 0 = never) */
    /* Health checks: run on the active and on hot standbys (a cold standby runs nothing to check).
     * A probe runs every check; it passes when all pass. `rise` passes in a row make the instance
     * healthy, `fall` failures in a row unhealthy. After a start, failures count only once a probe
     * passed or check_grace_ms went by. */
    int n_checks;
    us_check_def checks[US_MAX_CHECKS];
    int check_interval_ms;                  /* default 1000, > 0 */
    int check_timeout_ms;                   /* default 500, > 0, <= check_interval_ms */
    int rise, fall;                         /* defaults 2 and 3, >= 1 */
    int check_status_min, check_status_max; /* healthy HTTP status range (default 200..299) */
    int check_grace_ms;                     /* default 10000 */
    /* Failure policy (docs/decisions.md). */
    us_on_failure on_failure;     /* default failover (restart in place when no healthy standby) */
    int restart_backoff_min_ms;   /* first restart in place after this (default 200) */
    int restart_backoff_max_ms;   /* doubling up to this (default 30000) */
    int max_restarts;             /* restarts in place within restart_window_ms (default 3) */
    int restart_window_ms;        /* default 60000 */
    int failure_threshold;        /* failures of one node within failure_window_ms that ban it */
    int failure_window_ms;        /* default 600000 */
    int failure_cooldown_ms;      /* a banned node is used again after this (default 600000) */
    int min_failover_interval_ms; /* failures this soon after a failover restart in place (0) */
    bool failback;                /* move back to the preferred node by switchover (default no) */
    /* Notify hook (notify.h): run once per event about this service that this node reports. */
    char notify[US_CMD_MAX]; /* "" = none; started with /bin/sh -c */
    int notify_timeout_ms;   /* time limit of one run (default 10000) */
    /* Least privilege (docs/operations.md): the run command, hooks and exec checks run as `user`
     * (its groups from the user database) and `group`, with a clean environment (env.h). */
    char user[US_USER_MAX];           /* "" = as the agent */
    char group[US_USER_MAX];          /* "" = the user's primary group (or the agent's) */
    int n_env;                        /* `env` assignments, in file order */
    char env[US_MAX_ENV][US_ENV_MAX]; /* "KEY=VALUE" */
    /* Logs (SERVICE.log, .check.log, .notify.log) are rotated once larger than log_max bytes
     * (0 = never), keeping log_keep older files SERVICE.log.1 .. SERVICE.log.N. */
    int64_t log_max; /* default 10 MiB */
    int log_keep;    /* default 3 */
} us_service_def;

/* The services of a services file or of the replicated state: svc[0..n-1], allocated for `cap`
 * (at most US_MAX_SERVICES). Zeroed is empty; the owner frees it (us_service_set_free). */
typedef struct us_service_set {
    int n;
    int cap;
    int zeroed; /* svc[0..zeroed) were zeroed when first reserved; the rest of cap is not set */
    us_service_def *svc;
} us_service_set;

/* Room for at least n definitions (entries up to n never reserved before are zeroed; capacity
 * beyond n is left untouched, so that a grown array faults in only the pages used). 0, or -1
 * (n > US_MAX_SERVICES or out of memory; nothing changes). */
int us_service_set_reserve(us_service_set *set, int n);
void us_service_set_free(us_service_set *set);
/* Deep copy (dst's old contents freed). 0 or -1 (out of memory; dst unchanged). */
int us_service_set_copy(us_service_set *dst, const us_service_set *src);
/* Same n and the same definitions, byte for byte. */
bool us_service_set_equal(const us_service_set *a, const us_service_set *b);

/* A cluster member as recorded in the replicated state. */
typedef struct us_node {
    char name[US_NAME_MAX];
    uint64_t id;                    /* Raft server id (us_node_id(name)) */
    char address[US_ADDR_MAX];      /* cluster traffic: Raft over TCP, agent datagrams over UDP */
    char api[US_ADDR_MAX];          /* HTTP API */
    char service_host[US_ADDR_MAX]; /* `[node] service_host`: where others reach its services */
    uint64_t incarnation; /* random id of the agent process that registered last; 0 = never */
    bool voter;
    bool leaving;  /* being removed or stopped for maintenance: no new active roles */
    bool removing; /* `understudy node remove`: leave the Raft configuration once idle */
    bool left;     /* removed from the cluster */
    bool drained;  /* `understudy node drain`: no active roles or standbys here until undrained */
    /* State version of the last change to any active role this node held (taken, demoted,
     * renewed, its service paused or deleted; gaining a role does not count). Kept by
     * us_state_apply, carried in snapshots, not in commands: a voter's lease grant counts for the
     * node only once the node applied that far (lease.h, us_lease_granter_update). */
    uint64_t roles_v;
} us_node;

/* Failure record of one node for one service (anti-flapping, Pacemaker's fail-count). Wall-clock
 * milliseconds of the leader that recorded it. */
typedef struct us_failrec {
    char node[US_NAME_MAX];
    int failures;            /* failures counted in the window that began at window_ms */
    int64_t window_ms;       /* start of the current failure window */
    int64_t last_ms;         /* time of the last failure */
    int64_t banned_until_ms; /* not used for the service before this (0 = not banned) */
} us_failrec;

/* Why the change that produced an assignment took the active role from its holder (decide.c's
 * release of the holder). Replicated with the assignment as a short name ("failed", ...); a name
 * that is absent or unknown (a command written before kinds were recorded) reads as OTHER. */
typedef enum {
    US_RELEASE_NONE = 0,   /* the change released nothing */
    US_RELEASE_FAILED,     /* the holder reported its instance failed under the epoch */
    US_RELEASE_UNHEALTHY,  /* ... while it was being `recover`ed for failing health checks */
    US_RELEASE_FENCED,     /* the guardian on the holder fenced the instance */
    US_RELEASE_LEASE,      /* the holder's lease surely expired */
    US_RELEASE_AGENT,      /* the agent on the holder restarted (new incarnation) */
    US_RELEASE_SWITCHOVER, /* the holder confirmed its demotion in a planned switchover */
    US_RELEASE_DEMOTED,    /* the holder confirmed a demotion nobody asked for */
    US_RELEASE_OTHER,      /* not known */
    US_RELEASE_N,
} us_release_kind;

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
    us_release_kind release;    /* ... and the kind of its release of the holder, if any */
    uint64_t since_version;     /* state version at which the active role was given (lease.h) */
    bool renew; /* in a command: the holder keeps the role, given anew (since_version) so that
                   voters that revoked it grant it again; never set in the state */
    /* Self-healing (docs/decisions.md). Times are the deciding leader's wall clock in ms. */
    bool paused;  /* `understudy service pause`: no decisions, agents leave processes alone */
    bool recover; /* the holder must stop its (unhealthy) instance at once and report it failed */
    char restart_node[US_NAME_MAX]; /* restart in place pending: this node gets the role again */
    int64_t restart_at_ms;          /* ... not before this (backoff) */
    int restarts;                   /* restarts in place in the window that began at: */
    int64_t restart_window_ms;
    int64_t last_failover_ms; /* the active role last moved to another node after a failure */
    /* `position` with `max_lag` (R12): the holder's position as last recorded in the state (the
     * leader records it as it grows, so that a new leader knows it too), and at its release the
     * greater of that and its last report; the next active must be within max_lag of it. Cleared
     * when the role is given, or by a reset while the role is free. */
    bool has_lost_position;
    int64_t lost_position;
    int64_t position_ms;   /* when it was last recorded (the leader's wall clock) */
    int64_t free_since_ms; /* a service with `position`: when its holder was released (leader's
                              wall clock); the standbys' positions are read afresh before the
                              next active is chosen (R12). 0 = not waiting. */
    /* `synchronous` (R13). sync_want: the standbys the active is asked to wait for (its sync hook
     * runs for sync_gen); sync: the promotable set, every member of which holds every write the
     * active acknowledged. A change shrinks `sync` to sync ∩ sync_want in the same command; the
     * leader grows it to sync_want once the active reports its hook done for sync_gen. */
    int n_sync, n_sync_want;
    char sync[US_MAX_NODES][US_NAME_MAX];
    char sync_want[US_MAX_NODES][US_NAME_MAX];
    uint64_t sync_gen;
    bool sync_waived; /* `understudy reset`: the next promotion may ignore `sync` (data loss) */
    int n_fail;
    us_failrec fail[US_MAX_NODES];
    /* Local, not replicated (no command or snapshot carries it): the digest of the definition as
     * the last services command carried it (us_service_json_digest), all zero when unknown (a
     * restored snapshot): a command that carries the same one is not decoded again. Kept when a
     * command replaces the assignment. */
    unsigned char def_digest[16];
} us_assignment;

/* The failure record of `node` in `a`, or NULL. */
const us_failrec *us_assignment_failrec(const us_assignment *a, const char *node);

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
    bool revoked;         /* a voter revoked its lease under its current role(s) */
} us_node_obs;

typedef enum {
    US_INST_NONE = 0, /* nothing reported */
    US_INST_STANDBY,  /* running (hot) or ready (cold) as standby */
    US_INST_ACTIVE,   /* acting as active under `epoch` */
    US_INST_DEMOTED,  /* confirmed it stopped acting under `epoch` (switchover or self-demotion) */
    US_INST_FAILED,   /* the instance failed under `epoch` and does not act */
    US_INST_FENCED,   /* the guardian killed it under `epoch` (agent dead or lease lost) */
} us_inst_state;

typedef enum {
    US_HEALTH_UNKNOWN = 0, /* no checks, not running, or not yet `rise` passes */
    US_HEALTH_HEALTHY,
    US_HEALTH_UNHEALTHY, /* `fall` failed probes in a row */
} us_health;

typedef struct us_inst_obs {
    us_inst_state state;
    uint64_t epoch;  /* which epoch the report is about */
    int exit_status; /* for FAILED: exit status, or 128+signal */
    us_health health;
    char cause[US_REASON_MAX]; /* FAILED/UNHEALTHY: human cause ("check ... failed 3/3: ...") */
    bool refused;      /* FAILED because this node cannot hold the role at all (e.g. it lacks a
                          capability): a restart in place would fail the same way */
    uint64_t followed; /* a hot standby of a service with `follow`: the epoch of the active whose
                          follow hook succeeded here last, 0 = none */
    int64_t position;  /* what `position` printed last here, -1 = none (or its last run failed) */
    uint64_t sync_applied; /* the active: the assignment's sync_gen whose sync hook succeeded */
    uint64_t position_gen; /* the assignment's gen when the run that printed `position` started */
} us_inst_obs;

/* ---- Events: every transition with its cause, kept in the replicated state (fsm.h). ---- */

/* Event history bounds (`[cluster] events_max`, config.h): the default and the accepted range. A
 * snapshot that lists more events than US_EVENTS_LIMIT is refused; one that lists more than this
 * node keeps is cut to the newest. */
#define US_EVENTS_DEFAULT 1000
#define US_EVENTS_MIN 16
#define US_EVENTS_LIMIT 100000

typedef struct us_event {
    uint64_t seq;              /* 1, 2, ... over the cluster's life; gaps never */
    int64_t time_ms;           /* wall clock of the leader that recorded it */
    char kind[16];             /* role | node | health | restart | pause | drain | reset | ... */
    char service[US_NAME_MAX]; /* "" = not about one service */
    char node[US_NAME_MAX];    /* "" = not about one node */
    char from[US_NAME_MAX];    /* old -> new: role, node state, health ... */
    char to[US_NAME_MAX];
    char cause[US_REASON_MAX]; /* human cause */
} us_event;

const char *us_node_state_name(us_node_state s);
const char *us_lease_state_name(us_lease_state s);
const char *us_inst_state_name(us_inst_state s);
const char *us_health_name(us_health h);
/* "none", "failed", "unhealthy", "fenced", "lease", "agent_restart", "switchover", "demoted",
 * "other"; us_release_kind_parse reads these names, anything else (NULL too) as OTHER. */
const char *us_release_kind_name(us_release_kind k);
us_release_kind us_release_kind_parse(const char *name);

/* Deterministic Raft id for a node name (never 0). */
uint64_t us_node_id(const char *name);

/* Is `name` a valid node/service name: [a-z0-9-], 1..63 chars? */
bool us_name_valid(const char *name);

/* Bounded copy that always terminates; returns false if src did not fit. */
bool us_strlcpy(char *dst, const char *src, size_t size);

#endif
