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
 * The guardian ignores SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGPIPE and the terminal stop signals:
 * it ends only through its socket.
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

typedef struct us_guardian_event {
    pid_t pgid;
    char service[64];
    uint64_t epoch;
} us_guardian_event;

/* Fork the guardian. `node`/`incarnation` name this agent in announcements, sealed with keys[0]
 * for `cluster` (both copied). 0 or -errno. */
int us_guardian_start(const char *node, uint64_t incarnation, const us_keyring *keys,
                      const char *cluster, us_guardian **out);

/* Replace the list of peer UDP addresses ("IPv4:port") that announcements go to. */
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

/* Clean stop: the guardian kills what is still registered and exits; reaps it; frees g. */
void us_guardian_stop(us_guardian *g);

#endif
