/* guardian.c — see guardian.h.
 *
 * The agent and the guardian talk over a SOCK_SEQPACKET socketpair in fixed-size binary messages:
 * message boundaries are kept, and the guardian reads every queued message before it sees the
 * agent's EOF, so a group registered just before the agent died is still killed.
 */
#include "node/guardian.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "lib/hostport.h"
#include "lib/log.h"
#include "core/model.h"
#include "node/supervisor.h"
#include "node/vip.h"
#include "core/wire.h"

#define G_MAX_GROUPS 256
#define G_MAX_PEERS 16
/* 20 datagrams 100 ms apart, then 16 more 500 ms apart: ~10 s in all, long enough to reach a
 * leader elected after the old one froze (an election takes up to 2x the election timeout). */
#define G_ANNOUNCE_COUNT 36
#define G_ANNOUNCE_FAST 20
#define G_ANNOUNCE_GAP_NS 100000000LL
#define G_ANNOUNCE_SLOW_GAP_NS 500000000LL
#define G_GONE_WAIT_NS 1000000000LL
#define G_VIP_TRIES 3

enum { M_TRACK = 1, M_UNTRACK, M_LEASE, M_PEERS, M_STOP, M_FENCED, M_VIP, M_KEYS };

typedef struct g_msg {
    uint32_t type;
    int32_t pgid;
    uint32_t fence;
    uint32_t n_peers;
    uint64_t epoch;
    int64_t deadline_ns;
    char service[64];
    struct sockaddr_in peers[G_MAX_PEERS];
    us_vip vip;      /* M_VIP: fence = 1 registers, 0 forgets */
    us_keyring keys; /* M_KEYS: the cluster key file was reloaded */
} g_msg;

struct us_guardian {
    pid_t pid;
    int fd;
    /* What the guardian holds, mirrored so that a full table is refused synchronously. */
    int n_vips;
    us_vip vips[US_GUARDIAN_MAX_VIPS];
};

typedef struct g_group {
    pid_t pgid;
    bool fence;
    uint64_t epoch;
    char service[64];
} g_group;

/* All guardian state is static: nothing is allocated once the guardian runs. Untouched in the
 * agent itself. */
static struct {
    int fd, udp;
    char node[US_NAME_MAX];
    uint64_t inc;
    g_group groups[G_MAX_GROUPS];
    int n_groups;
    struct sockaddr_in peers[G_MAX_PEERS];
    int n_peers;
    int64_t lease_ns;          /* 0 = no lease */
    g_group ann[G_MAX_GROUPS]; /* what the running announcement lists */
    int n_ann;
    int ann_left;    /* datagrams still to send */
    bool agent_dead; /* say so in announcements: peers need not wait for silence */
    int64_t ann_next_ns;
    g_group killed[G_MAX_GROUPS];
    us_vip vips[US_GUARDIAN_MAX_VIPS];
    int n_vips;
    char json[32768];
    us_keyring keys; /* announcements are sealed like every datagram (wire.h) */
    char cluster[US_NAME_MAX];
    uint64_t seq;
    unsigned char sealed[32768 + US_WIRE_OVERHEAD];
} G;

static bool vip_same(const us_vip *a, const us_vip *b)
{
    size_t len = a->family == AF_INET ? 4 : sizeof a->addr;
    return a->family == b->family && memcmp(a->addr, b->addr, len) == 0 &&
           strncmp(a->dev, b->dev, sizeof a->dev) == 0;
}

static int vip_find(const us_vip *vips, int n, const us_vip *v)
{
    for (int i = 0; i < n; i++)
        if (vip_same(&vips[i], v))
            return i;
    return -1;
}

static int64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void sleep_until_ns(int64_t t)
{
    struct timespec ts = {(time_t)(t / 1000000000LL), (long)(t % 1000000000LL)};
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
        ;
}

/* ---- announcements ---- */

static size_t json_str(char *buf, size_t pos, size_t cap, const char *s)
{
    /* Names are [a-z0-9-] by validation; escaping keeps the datagram valid JSON regardless. */
    for (; *s && pos + 8 < cap; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            buf[pos++] = '\\';
            buf[pos++] = (char)c;
        } else if (c < 0x20) {
            pos += (size_t)snprintf(buf + pos, cap - pos, "\\u%04x", c);
        } else {
            buf[pos++] = (char)c;
        }
    }
    return pos;
}

static size_t build_announcement(void)
{
    char *b = G.json;
    size_t cap = sizeof G.json, n = 0;
    /* Node and incarnation travel in the sealed envelope. */
    n += (size_t)snprintf(b + n, cap - n, "{\"t\":\"fenced\",\"fenced\":[");
    for (int i = 0; i < G.n_ann && n + 128 < cap; i++) {
        n += (size_t)snprintf(b + n, cap - n, "%s{\"service\":\"", i ? "," : "");
        n = json_str(b, n, cap, G.ann[i].service);
        n += (size_t)snprintf(b + n, cap - n, "\",\"epoch\":%llu}",
                              (unsigned long long)G.ann[i].epoch);
    }
    n += (size_t)snprintf(b + n, cap - n, "]%s}", G.agent_dead ? ",\"agent\":\"dead\"" : "");
    return n;
}

static void announce_once(void)
{
    size_t len = build_announcement();
    /* One sealed datagram per peer (each its own nonce and sequence number); getrandom(2) needs
     * no descriptor and no allocation. */
    for (int i = 0; i < G.n_peers; i++) {
        us_wire_hdr h = {.chan = US_CHAN_GUARDIAN, .inc = G.inc, .seq = ++G.seq};
        us_strlcpy(h.sender, G.node, sizeof h.sender);
        unsigned char nonce[24];
        if (getrandom(nonce, sizeof nonce, 0) != (ssize_t)sizeof nonce)
            continue;
        size_t dlen = us_wire_seal_nonce(&G.keys, G.cluster, &h, G.json, len, nonce, G.sealed,
                                         sizeof G.sealed);
        if (dlen)
            sendto(G.udp, G.sealed, dlen, MSG_DONTWAIT | MSG_NOSIGNAL,
                   (struct sockaddr *)&G.peers[i], sizeof G.peers[i]);
    }
    bool fast = G_ANNOUNCE_COUNT - G.ann_left < G_ANNOUNCE_FAST - 1;
    G.ann_next_ns = mono_ns() + (fast ? G_ANNOUNCE_GAP_NS : G_ANNOUNCE_SLOW_GAP_NS);
    if (--G.ann_left == 0)
        G.n_ann = 0;
}

static void announce_add(const g_group *g)
{
    for (int i = 0; i < G.n_ann; i++)
        if (G.ann[i].epoch == g->epoch && strcmp(G.ann[i].service, g->service) == 0)
            return;
    if (G.n_ann < G_MAX_GROUPS)
        G.ann[G.n_ann++] = *g;
}

static void announce_restart(void)
{
    G.ann_left = G_ANNOUNCE_COUNT;
    G.ann_next_ns = mono_ns();
}

/* ---- killing ---- */

static void report(const g_group *g)
{
    g_msg m;
    memset(&m, 0, sizeof m);
    m.type = M_FENCED;
    m.pgid = g->pgid;
    m.epoch = g->epoch;
    memcpy(m.service, g->service, sizeof m.service);
    send(G.fd, &m, sizeof m, MSG_DONTWAIT | MSG_NOSIGNAL);
}

/* SIGKILL and unregister the groups (all, or only fence_on_lease ones) into G.killed. */
static int kill_groups(bool only_fence)
{
    int n = 0;
    for (int i = 0; i < G.n_groups;) {
        if (only_fence && !G.groups[i].fence) {
            i++;
            continue;
        }
        kill(-G.groups[i].pgid, SIGKILL);
        G.killed[n++] = G.groups[i];
        G.groups[i] = G.groups[--G.n_groups];
    }
    return n;
}

/* Remove every registered VIP: a fenced or orphaned node must stop answering ARP/ND for it. They
 * stay registered; the agent forgets them. */
static void drop_vips(void)
{
    for (int i = 0; i < G.n_vips; i++) {
        int rc = 0;
        for (int t = 0; t < G_VIP_TRIES; t++) {
            if (t)
                sleep_until_ns(mono_ns() + 10000000);
            rc = us_vip_del(&G.vips[i]);
            if (rc == 0)
                break;
        }
        if (rc < 0)
            us_error("guardian: cannot remove virtual IP %s: %s", G.vips[i].text, strerror(-rc));
        else
            us_debug("guardian: removed virtual IP %s", G.vips[i].text);
    }
    if (G.n_vips)
        us_info("guardian: %d registered virtual IP(s) removed", G.n_vips);
}

/* Announcing a group as fenced while one of its processes still runs would let the leader start
 * a second active instance: wait (bounded) until each group is gone. */
static void wait_gone(int n)
{
    int64_t deadline = mono_ns() + G_GONE_WAIT_NS;
    for (;;) {
        bool any = false;
        for (int i = 0; i < n && !any; i++)
            any = us_pgrp_alive(G.killed[i].pgid);
        if (!any || mono_ns() >= deadline)
            break;
        sleep_until_ns(mono_ns() + 1000000);
    }
}

/* Queue the gone fence_on_lease groups among G.killed for announcement; true if any was. */
static bool announce_killed(int n)
{
    bool any = false;
    for (int i = 0; i < n; i++) {
        if (!G.killed[i].fence)
            continue;
        if (us_pgrp_alive(G.killed[i].pgid)) {
            us_error("guardian: process group %d (%s) survived SIGKILL for 1 s, not announced",
                     (int)G.killed[i].pgid, G.killed[i].service);
            continue;
        }
        announce_add(&G.killed[i]);
        any = true;
    }
    return any;
}

static void fence_lease(void)
{
    G.lease_ns = 0; /* until the agent sets a new one */
    int n = kill_groups(true);
    drop_vips();
    if (n == 0)
        return;
    for (int i = 0; i < n; i++)
        report(&G.killed[i]);
    wait_gone(n);
    if (announce_killed(n))
        announce_restart();
}

static void __attribute__((noreturn)) agent_gone(void)
{
    int n = kill_groups(false);
    drop_vips();
    wait_gone(n);
    /* Announced even when nothing was killed: the leader re-places this node's standbys at once
     * instead of after the dead threshold. */
    announce_killed(n);
    G.agent_dead = true;
    announce_restart();
    while (G.ann_left > 0) {
        sleep_until_ns(G.ann_next_ns);
        announce_once();
    }
    _exit(0);
}

static void __attribute__((noreturn)) clean_stop(void)
{
    int n = kill_groups(false);
    drop_vips();
    wait_gone(n);
    _exit(0);
}

/* ---- messages from the agent ---- */

static void handle(const g_msg *m)
{
    switch (m->type) {
    case M_TRACK: {
        g_group g = {.pgid = m->pgid, .fence = m->fence != 0, .epoch = m->epoch};
        memcpy(g.service, m->service, sizeof g.service);
        g.service[sizeof g.service - 1] = '\0';
        for (int i = 0; i < G.n_groups; i++)
            if (G.groups[i].pgid == g.pgid) {
                G.groups[i] = g;
                return;
            }
        if (G.n_groups < G_MAX_GROUPS) {
            G.groups[G.n_groups++] = g;
            return;
        }
        /* An instance that cannot be guarded must not run. */
        us_error("guardian: more than %d process groups, killing %d (%s)", G_MAX_GROUPS,
                 (int)g.pgid, g.service);
        kill(-g.pgid, SIGKILL);
        report(&g);
        return;
    }
    case M_UNTRACK:
        for (int i = 0; i < G.n_groups; i++)
            if (G.groups[i].pgid == m->pgid) {
                G.groups[i] = G.groups[--G.n_groups];
                break;
            }
        return;
    case M_LEASE:
        /* A renewal read after the deadline is too late, even if it was sent in time. */
        if (G.lease_ns && mono_ns() >= G.lease_ns)
            fence_lease();
        G.lease_ns = m->deadline_ns;
        return;
    case M_KEYS:
        if (m->keys.n >= 1 && m->keys.n <= US_KEYS_MAX)
            G.keys = m->keys;
        return;
    case M_PEERS:
        G.n_peers = m->n_peers <= G_MAX_PEERS ? (int)m->n_peers : G_MAX_PEERS;
        memcpy(G.peers, m->peers, sizeof G.peers);
        return;
    case M_VIP: {
        us_vip v = m->vip;
        v.dev[sizeof v.dev - 1] = '\0';
        v.text[sizeof v.text - 1] = '\0';
        int i = vip_find(G.vips, G.n_vips, &v);
        if (!m->fence) {
            if (i >= 0)
                G.vips[i] = G.vips[--G.n_vips];
        } else if (i >= 0) {
            G.vips[i] = v;
        } else if (G.n_vips < US_GUARDIAN_MAX_VIPS) {
            G.vips[G.n_vips++] = v;
        } else {
            /* The agent's mirror refuses this first; kept safe regardless. */
            us_error("guardian: more than %d virtual IPs, %s is not guarded", US_GUARDIAN_MAX_VIPS,
                     v.text);
        }
        return;
    }
    case M_STOP:
        clean_stop();
    default:
        return;
    }
}

static void __attribute__((noreturn))
guardian_main(int sock, const char *node, uint64_t inc, const us_keyring *keys, const char *cluster)
{
    prctl(PR_SET_NAME, "us-guardian");
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    for (int sig = 1; sig < NSIG; sig++) {
        if (sig == SIGKILL || sig == SIGSTOP)
            continue;
        /* It ends only through its socket: terminal and service-manager signals must not stop
         * it while the agent's instances may still run. */
        bool ign = sig == SIGINT || sig == SIGTERM || sig == SIGHUP || sig == SIGPIPE ||
                   sig == SIGQUIT || sig == SIGTSTP || sig == SIGTTIN || sig == SIGTTOU;
        sa.sa_handler = ign ? SIG_IGN : SIG_DFL;
        sigaction(sig, &sa, NULL);
    }
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);

    /* Keep stdio (logging) and the socket, as fd 3; drop the agent's end and everything else. */
    if (sock != 3 && dup2(sock, 3) < 0)
        _exit(1);
    close_range(4, ~0U, 0);
    G.fd = 3;
    fcntl(G.fd, F_SETFD, FD_CLOEXEC);

    /* The guardian must outlive an agent killed for memory. Needs privilege; best effort. */
    int oom = open("/proc/self/oom_score_adj", O_WRONLY | O_CLOEXEC);
    if (oom >= 0) {
        (void)!write(oom, "-1000", 5);
        close(oom);
    }

    us_strlcpy(G.node, node, sizeof G.node);
    G.inc = inc;
    G.keys = *keys;
    us_strlcpy(G.cluster, cluster, sizeof G.cluster);
    G.udp = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);

    for (;;) {
        int64_t now = mono_ns();
        if (G.lease_ns && now >= G.lease_ns) {
            fence_lease();
            now = mono_ns();
        }
        if (G.ann_left > 0 && now >= G.ann_next_ns) {
            announce_once();
            continue;
        }
        int64_t wake = G.lease_ns;
        if (G.ann_left > 0 && (!wake || G.ann_next_ns < wake))
            wake = G.ann_next_ns;
        struct timespec ts, *tp = NULL;
        if (wake) {
            int64_t rel = wake > now ? wake - now : 0;
            ts.tv_sec = (time_t)(rel / 1000000000LL);
            ts.tv_nsec = (long)(rel % 1000000000LL);
            tp = &ts;
        }
        struct pollfd pfd = {.fd = G.fd, .events = POLLIN};
        if (ppoll(&pfd, 1, tp, NULL) <= 0)
            continue;
        for (;;) {
            g_msg m;
            ssize_t n = recv(G.fd, &m, sizeof m, MSG_DONTWAIT);
            if (n < 0 && errno == EINTR)
                continue;
            if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
                break;
            if (n <= 0)
                agent_gone(); /* EOF (or reset) without a stop message */
            if (n == (ssize_t)sizeof m)
                handle(&m);
        }
    }
}

/* ---- agent side ---- */

int us_guardian_start(const char *node, uint64_t incarnation, const us_keyring *keys,
                      const char *cluster, us_guardian **out)
{
    *out = NULL;
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0)
        return -errno;
    sigset_t all, old;
    sigfillset(&all);
    sigprocmask(SIG_SETMASK, &all, &old);
    pid_t pid = fork();
    if (pid == 0)
        guardian_main(sv[1], node, incarnation, keys, cluster);
    int e = errno;
    sigprocmask(SIG_SETMASK, &old, NULL);
    close(sv[1]);
    /* Allocated after fork: the guardian holds no heap block of the agent's. */
    us_guardian *g = pid > 0 ? calloc(1, sizeof *g) : NULL;
    if (!g) {
        if (pid > 0) {
            /* Its EOF makes the guardian exit (nothing registered yet). */
            close(sv[0]);
            while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
                ;
            return -ENOMEM;
        }
        close(sv[0]);
        return -e;
    }
    g->pid = pid;
    g->fd = sv[0];
    *out = g;
    return 0;
}

/* Never blocks: a frozen guardian must not freeze the agent. A lost lease renewal only makes the
 * guardian fence early, which is the safe side. */
static int send_msg(us_guardian *g, const g_msg *m)
{
    ssize_t n;
    do
        n = send(g->fd, m, sizeof *m, MSG_DONTWAIT | MSG_NOSIGNAL);
    while (n < 0 && errno == EINTR);
    if (n < 0)
        return -errno;
    return n == (ssize_t)sizeof *m ? 0 : -EIO;
}

int us_guardian_set_peers(us_guardian *g, const char *const *peers, int n)
{
    if (n < 0 || n > G_MAX_PEERS)
        return -E2BIG;
    g_msg m;
    memset(&m, 0, sizeof m);
    m.type = M_PEERS;
    m.n_peers = (uint32_t)n;
    for (int i = 0; i < n; i++)
        if (us_sockaddr_parse(peers[i], &m.peers[i]) < 0) {
            us_warn("guardian peer \"%s\": expected IPv4:port", peers[i]);
            return -EINVAL;
        }
    return send_msg(g, &m);
}

int us_guardian_track(us_guardian *g, pid_t pgid, const char *service, uint64_t epoch,
                      bool fence_on_lease)
{
    if (pgid <= 1)
        return -EINVAL;
    g_msg m;
    memset(&m, 0, sizeof m);
    m.type = M_TRACK;
    m.pgid = pgid;
    m.epoch = epoch;
    m.fence = fence_on_lease;
    if (!us_strlcpy(m.service, service ? service : "", sizeof m.service))
        return -ENAMETOOLONG;
    return send_msg(g, &m);
}

int us_guardian_untrack(us_guardian *g, pid_t pgid)
{
    g_msg m;
    memset(&m, 0, sizeof m);
    m.type = M_UNTRACK;
    m.pgid = pgid;
    return send_msg(g, &m);
}

int us_guardian_vip(us_guardian *g, const us_vip *v, bool present)
{
    int i = vip_find(g->vips, g->n_vips, v);
    if (present && i < 0 && g->n_vips == US_GUARDIAN_MAX_VIPS)
        return -ENOSPC;
    g_msg m;
    memset(&m, 0, sizeof m);
    m.type = M_VIP;
    m.fence = present;
    m.vip = *v;
    int rc = send_msg(g, &m);
    if (rc < 0)
        return rc;
    if (present && i < 0)
        g->vips[g->n_vips++] = *v;
    else if (!present && i >= 0)
        g->vips[i] = g->vips[--g->n_vips];
    return 0;
}

int us_guardian_lease(us_guardian *g, int64_t deadline_ns)
{
    g_msg m;
    memset(&m, 0, sizeof m);
    m.type = M_LEASE;
    m.deadline_ns = deadline_ns < 0 ? 0 : deadline_ns;
    return send_msg(g, &m);
}

int us_guardian_keys(us_guardian *g, const us_keyring *keys)
{
    g_msg m;
    memset(&m, 0, sizeof m);
    m.type = M_KEYS;
    m.keys = *keys;
    int rc = send_msg(g, &m);
    sodium_memzero(&m, sizeof m);
    return rc;
}

int us_guardian_fd(const us_guardian *g)
{
    return g->fd;
}

pid_t us_guardian_pid(const us_guardian *g)
{
    return g->pid;
}

int us_guardian_read_event(us_guardian *g, us_guardian_event *ev)
{
    for (;;) {
        g_msg m;
        ssize_t n = recv(g->fd, &m, sizeof m, MSG_DONTWAIT);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -errno;
        }
        if (n == 0)
            return -EPIPE; /* the guardian is gone */
        if (n != (ssize_t)sizeof m || m.type != M_FENCED)
            continue;
        ev->pgid = m.pgid;
        ev->epoch = m.epoch;
        memcpy(ev->service, m.service, sizeof ev->service);
        ev->service[sizeof ev->service - 1] = '\0';
        return 1;
    }
}

void us_guardian_stop(us_guardian *g)
{
    if (!g)
        return;
    g_msg m;
    memset(&m, 0, sizeof m);
    m.type = M_STOP;
    /* If the stop cannot be sent, the EOF alone still makes the guardian kill everything. */
    send_msg(g, &m);
    close(g->fd);
    while (waitpid(g->pid, NULL, 0) < 0 && errno == EINTR)
        ;
    free(g);
}
