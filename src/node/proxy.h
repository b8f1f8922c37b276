/* proxy.h — the failover-aware TCP proxy of one service on this node.
 *
 * It listens on the service's proxy address and forwards each accepted connection to the current
 * target, which the agent sets from the replicated assignment (the active node's backend). While
 * there is no target (no active, or a planned switchover in progress) new connections are held,
 * not refused, until a target appears or `hold_ms` passes. A connection attempt that is refused
 * or times out is retried against the then-current target until its hold deadline, so a client
 * connecting mid-failover or while the new active is still starting is served, not failed.
 * Established connections keep their backend when the target changes (drain): the agent counts
 * them per epoch and lets the old active demote only when they are done.
 *
 * Data moves with splice(2) through a pipe per direction; everything is non-blocking on the libuv
 * loop; half-close is passed on (shutdown(SHUT_WR)); the connection limits (in all, and per
 * client address) are enforced at accept with a log line (rate-limited) when one is hit; a
 * forwarding connection idle for idle_ms is closed (reset both ways). No file descriptor outlives
 * its connection, except a bounded pool of empty pipes kept for reuse and closed at stop.
 */
#ifndef US_PROXY_H
#define US_PROXY_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

typedef struct us_proxy us_proxy;

typedef struct us_proxy_opts {
    const char *name;       /* service name, for logs */
    int hold_ms;            /* max wait of a new connection for a usable target */
    int max_conns;          /* accepted connections at once (held + connecting + forwarding) */
    int connect_timeout_ms; /* one backend connect attempt (default 1000 when 0) */
    int max_per_source;     /* accepted connections at once from one client IPv4 address (0 = any),
                               enforced once the proxy is half full: a fair share under contention.
                               Not always: one busy client (a load balancer) may hold hundreds of
                               connections during a switchover's hold, and refusing them would fail
                               the requests a planned switchover must not fail */
    int idle_ms;            /* close a forwarding connection with no byte either way this long
                               (checked every idle_ms/4, at most every second; 0 = never) */
    bool has_fd;            /* listen on `fd`, a non-blocking listening socket (a planned restart
                               hands it over from the earlier agent), instead of binding `listen` */
    int fd;
} us_proxy_opts;

typedef struct us_proxy_stats {
    uint64_t accepted, forwarded, failed, refused_limit; /* counters since start */
    uint64_t refused_source, idle_closed; /* per-source limit hit; closed for idleness */
    int held;                             /* waiting for a target */
    int connecting;                       /* backend connect in progress */
    int open;                             /* forwarding */
} us_proxy_stats;

/* Listen on "IPv4:port". 0, or -errno with a message in err ("address already in use"). */
int us_proxy_start(uv_loop_t *loop, const char *listen, const us_proxy_opts *o, us_proxy **out,
                   char *err, size_t errlen);

/* Where new connections go: backend of the active under `epoch`; NULL = hold them. Pending
 * connection attempts move to the new target at once. */
void us_proxy_set_target(us_proxy *p, const struct sockaddr_in *backend, uint64_t epoch);

/* Forwarding connections whose backend was chosen under `epoch` (for drain accounting). */
int us_proxy_open_conns(const us_proxy *p, uint64_t epoch);

void us_proxy_get_stats(const us_proxy *p, us_proxy_stats *st);

/* Stop accepting and give the listening socket to the caller (-1 if already given): queued and
 * new connections wait in its backlog for whoever accepts next. Open connections go on. */
int us_proxy_release_listener(us_proxy *p);

/* No connection held, connecting or forwarding. */
bool us_proxy_idle(const us_proxy *p);

/* Close the listener and every connection; frees p once its handles are closed. */
void us_proxy_stop(us_proxy *p);

#endif
