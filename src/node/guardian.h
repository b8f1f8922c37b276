/* guardian.h — fences active instances when the agent cannot.
 *
 * The guardian is a small separate process (forked from the agent at start, before the event loop
 * and any thread exist) that holds a list of process groups and a lease deadline. It has no event
 * loop, no allocation after start, and only blocks in poll(2) (and, while fencing, in netlink
 * requests the kernel answers at once, each bounded to 2 s).
 *  - When the lease deadline (CLOCK_MONOTONIC) passes without renewal, it SIGKILLs every group
 *    registered with fence_on_lease, tells the agent (us_guardian_read_event) and announces it.
 *  - When the agent dies (its socket reaches EOF without a clean stop), it SIGKILLs every
 *    registered group, waits until they are gone, announces it and exits.
 *  - An announcement is the UDP datagram
 *      {"t":"fenced","fenced":[{"service":S,"epoch":E},...]}   (plus "agent":"dead" when it died)
 *    sealed with the cluster key on the guardian channel as node N of incarnation I (wire.h),
 *    sent to every peer address 20 times 100 ms apart, then 16 times 500 ms apart (~10 s, bounded),
 *    so that the leader — also one elected after the old leader froze — can reassign without
 *    waiting for the lease to run out. Only groups registered with fence_on_lease (active
 *    instances) are listed, and only once they are gone.
 *  - Virtual IPs registered with us_guardian_vip are removed (us_vip_del) on every fencing — the
 *    lease ran out or the agent died — right after the kill and before the announcement, so a
 *    fenced or dead node stops answering ARP/ND for them at once. Lease fencing leaves them
 *    registered (the agent may add them again); only the agent forgets them.
 *  - us_guardian_stop (clean agent exit) kills what is still registered, removes the registered
 *    VIPs, announces nothing.
 *  - Planned agent restart (SIGUSR2): us_guardian_standin, us_guardian_detach, then
 *    us_guardian_leave. The guardian takes the agent's EOF as a departure, not a death: it keeps
 *    every group and VIP, renews the lease in the agent's stead (bounded), fences by the lease,
 * holds the descriptors passed with us_guardian_pass_fd (the proxies' listening sockets, so that no
 * connection is refused meanwhile), and waits for the next agent at a unix socket (mode 0600, same
 * user or root). us_guardian_attach there hands everything over; the guardian then serves the new
 * agent as it served the old one. If no agent has adopted by the lease end (or by give_up without a
 * lease), it does what it does when the agent dies: kills everything, drops the VIPs, announces,
 * exits. The guardian ignores SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGPIPE and the terminal stop
 * signals: it ends only through its socket.
 */
#ifndef US_GUARDIAN_H
#define US_GUARDIAN_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "lib/key.h"
#include "core/model.h"

typedef struct us_guardian us_guardian;

/* VIPs held on one node at a time (each service has up to US_MAX_VIPS; a node holding more active
 * roles with VIPs than fit leaves the rest unguarded, with an error in the log). The registrations
 * of a full table fit in the socket's buffer at once (one message each). */
#define US_GUARDIAN_MAX_VIPS 128

#define US_GUARDIAN_MAX_GROUPS 256
#define US_GUARDIAN_MAX_FDS US_MAX_SERVICES

/* A process group a guardian holds, as handed over to the next agent. */
typedef struct us_guardian_group {
    pid_t pgid;
    bool fence; /* fenced by the lease: an active instance */
    uint64_t epoch;
    char service[64];
} us_guardian_group;

/* What a guardian left by an agent that restarted on purpose hands over (us_guardian_attach). */
typedef struct us_guardian_handover {
    int64_t lease_ns; /* the lease deadline it fences by (CLOCK_MONOTONIC ns), 0 = none */
    uint64_t version; /* the state version the leaving agent had applied */
    uint64_t inc;     /* the leaving agent's incarnation */
    int n_groups;
    us_guardian_group groups[US_GUARDIAN_MAX_GROUPS];
    int n_vips;
    us_vip vips[US_GUARDIAN_MAX_VIPS];
    int n_fds; /* descriptors passed with us_guardian_pass_fd, now the caller's */
    int fds[US_GUARDIAN_MAX_FDS];
    char fd_tag[US_GUARDIAN_MAX_FDS][108];
} us_guardian_handover;

typedef struct us_guardian_event {
    pid_t pgid;
    char service[64];
    uint64_t epoch;
} us_guardian_event;

/* Fork the guardian. `node`/`incarnation` name this agent in announcements, sealed with keys[0]
 * for `cluster` (both copied). 0 or -errno. */
int us_guardian_start(const char *node, uint64_t incarnation, const us_keyring *keys,
                      const char *cluster, us_guardian **out);

/* Replace the list of peer UDP addresses ("IPv4:port") that announcements go to: every other
 * node of the cluster, at most US_MAX_NODES - 1 (-E2BIG beyond, nothing changes). */
int us_guardian_set_peers(us_guardian *g, const char *const *peers, int n);

/* Register a process group. fence_on_lease: kill it when the lease runs out (an active
 * instance). A group that does not fit the guardian's table is killed and reported at once. */
int us_guardian_track(us_guardian *g, pid_t pgid, const char *service, uint64_t epoch,
                      bool fence_on_lease);
int us_guardian_untrack(us_guardian *g, pid_t pgid);

/* Register (present) or forget a virtual IP. The agent registers a VIP right before adding it and
 * forgets it after removing it. At most US_GUARDIAN_MAX_VIPS distinct VIPs (same family, address
 * and device) are held: -ENOSPC beyond that, and then the VIP must not be added. Registering a
 * registered VIP or forgetting an unknown one succeeds. 0 or -errno. */
int us_guardian_vip(us_guardian *g, const us_vip *v, bool present);

/* Set the lease deadline, CLOCK_MONOTONIC in ns; 0 = no lease (nothing is fenced by time). */
int us_guardian_lease(us_guardian *g, int64_t deadline_ns);

/* The cluster key file was reloaded: seal announcements with these keys from now on. */
int us_guardian_keys(us_guardian *g, const us_keyring *keys);

/* The guardian's pid (for logs and tests). */
pid_t us_guardian_pid(const us_guardian *g);

/* Descriptor that becomes readable when the guardian reports a fencing (for uv_poll). */
int us_guardian_fd(const us_guardian *g);

/* Read one pending fencing report: 1 if one was read, 0 if none is pending, -errno on error. */
int us_guardian_read_event(us_guardian *g, us_guardian_event *ev);

/* Clean stop: the guardian kills what is still registered and exits; reaps it (or, attached,
 * waits up to 5 s for its exit); frees g. */
void us_guardian_stop(us_guardian *g);

/* Planned restart. Pass a descriptor for the next agent (a dup stays with the guardian; the
 * caller may close its own); `tag` names it (< 108 bytes). 0 or -errno. */
int us_guardian_pass_fd(us_guardian *g, int fd, const char *tag);

/* A voter the guardian renews the lease with while no agent runs. */
typedef struct us_guardian_voter {
    char name[US_NAME_MAX];
    char address[US_ADDR_MAX]; /* its datagram address, IPv4:port (unused for self) */
    uint64_t inc;              /* its incarnation as we know it */
    bool self;                 /* this node (a voter): grants itself */
} us_guardian_voter;

/* Planned restart, before us_guardian_detach: the voters and the agent's own datagram socket
 * (passed, the caller keeps its descriptor), so that the guardian can stand in for the agent
 * (lease.h's renewal, as the agent's incarnation) until the next agent takes over. 0 or -errno. */
int us_guardian_standin(us_guardian *g, int udp_fd, const us_guardian_voter *v, int n);

/* Planned restart: from our EOF on, wait for the next agent at unix socket `path` instead of
 * killing. `version` (our applied state version) is handed over, and bounds the renewals: a
 * grant counts only from a voter not past it. Renewals (every hb_ms, lease lease_ms, datagram
 * sequence numbers after `seq`) stop at give_up_ns (CLOCK_MONOTONIC), or when an active group
 * dies; the wait ends at the lease end (or give_up_ns without a lease). Then us_guardian_leave.
 * 0 or -errno. */
int us_guardian_detach(us_guardian *g, const char *path, uint64_t version, int64_t give_up_ns,
                       int hb_ms, int lease_ms, uint64_t seq);

/* Close our end without a stop and free g: after us_guardian_detach, the guardian waits. */
void us_guardian_leave(us_guardian *g);

/* Connect to a guardian waiting at `path` (it goes on renewing and fencing until
 * us_guardian_adopt): 0 with *out; -ENOENT when none waits there (a socket file nobody listens at
 * is removed); other -errno. Closing *out without adopting (us_guardian_leave) makes it wait for
 * another agent; us_guardian_stop kills what it holds. */
int us_guardian_connect(const char *path, us_guardian **out);

/* Take it over as incarnation `inc`: it stops renewing, closes the agent's datagram socket and
 * hands everything over into *h (bounded to 2 s). It still holds and fences all of h's groups, by
 * h->lease_ns; whatever the caller does not keep, it must untrack. 0 or -errno. */
int us_guardian_adopt(us_guardian *g, uint64_t inc, us_guardian_handover *h);

#endif
