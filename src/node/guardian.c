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
#include <sched.h>
#include <signal.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "lib/hostport.h"
#include "lib/log.h"
#include "core/lease.h"
#include "core/model.h"
#include "node/supervisor.h"
#include "node/vip.h"
#include "core/wire.h"

#define G_MAX_GROUPS 256
/* Every other node of the largest cluster hears the announcements. The list travels in
 * messages of G_PEERS_PER_MSG addresses: a message keeps its size (the VIP registrations must
 * fit the socket buffer at once), and its layout, which a guardian left running by the previous
 * version of the agent (a planned restart) still reads. */
#define G_MAX_PEERS (US_MAX_NODES - 1)
#define G_PEERS_PER_MSG 16
/* 20 datagrams 100 ms apart, then 16 more 500 ms apart: ~10 s in all, long enough to reach a
 * leader elected after the old one froze (an election takes up to 2x the election timeout). */
#define G_ANNOUNCE_COUNT 36
#define G_ANNOUNCE_FAST 20
#define G_ANNOUNCE_GAP_NS 100000000LL
#define G_ANNOUNCE_SLOW_GAP_NS 500000000LL
#define G_GONE_WAIT_NS 1000000000LL
#define G_VIP_TRIES 3

enum {
    M_TRACK = 1,
    M_UNTRACK,
    M_LEASE,
    M_PEERS,
    M_STOP,
    M_FENCED,
    M_VIP,
    M_KEYS,
    M_DETACH, /* agent: I leave on purpose; wait for the next agent at `path` */
    M_FD,     /* agent: hold this descriptor (SCM_RIGHTS) for the next agent; tag in `path` */
    M_ADOPT,  /* next agent: I take over, as incarnation `epoch` */
    M_GROUP,  /* guardian to the next agent: a group it holds */
    M_END,    /* guardian to the next agent: the hand-over is complete */
    M_VOTER,  /* agent: a voter to renew the lease with while no agent runs */
    M_UDP,    /* agent: its datagram socket (SCM_RIGHTS), for those renewals */
};

#define G_MAX_FDS US_MAX_SERVICES

typedef struct g_msg {
    uint32_t type;
    int32_t pgid;
    uint32_t fence;
    uint32_t n_peers;
    uint64_t epoch;
    int64_t deadline_ns;
    char service[64];
    struct sockaddr_in peers[G_PEERS_PER_MSG]; /* M_PEERS: pgid = index of the first, epoch = all */
    us_vip vip;                                /* M_VIP: fence = 1 registers, 0 forgets */
    us_keyring keys;                           /* M_KEYS: the cluster key file was reloaded */
    char path[108]; /* M_DETACH: the socket to wait at; M_FD: the descriptor's tag */
    uint64_t inc;   /* M_END: the incarnation of the agent that left */
    /* M_DETACH: the timing and the agent's last datagram sequence number, for the stand-in */
    int32_t hb_ms, lease_ms;
    uint64_t seq;
} g_msg;

struct us_guardian {
    pid_t pid;
    int fd;
    bool attached; /* not our child: left by an earlier agent (us_guardian_attach) */
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
    /* Planned agent restart (us_guardian_detach): no agent, or one that has not adopted yet. */
    bool detach_pending; /* the agent said it leaves: its EOF is not a death */
    bool detached;       /* waiting for the next agent (until it adopts) */
    int listen_fd;       /* where the next agent connects, -1 = none */
    char path[108];      /* of listen_fd */
    int64_t give_up_ns;  /* no lease: wait for the next agent until then */
    uint64_t version;    /* the leaving agent's state version, for the next one */
    int fds[G_MAX_FDS];  /* descriptors held for the next agent (listening sockets) */
    char fd_tag[G_MAX_FDS][108];
    int n_fds;
    /* The stand-in: while no agent runs, renew the lease with the voters as the agent would
     * (us_lease_until over their grants, counting a grant only if the voter's roles_v of this
     * node is not past the state version the agent left with), on the agent's own datagram
     * socket, until give_up. */
    int agent_udp; /* -1 = none */
    int hb_ms, lease_ms;
    uint64_t agent_seq; /* datagram sequence numbers go on after the agent's */
    uint64_t round;     /* our ping rounds */
    int64_t round_sent_ms[256];
    int64_t next_ping_ns;
    bool renewing;
    struct {
        char name[US_NAME_MAX];
        struct sockaddr_in sa;
        uint64_t inc;        /* its incarnation, the one our pings are addressed to */
        bool self;           /* this node: grants itself */
        us_lease_granter gr; /* its grants of our rounds (send times on our clock) */
    } voters[G_MAX_PEERS];
    int n_voters;
    unsigned char rx[US_WIRE_MAX];
    unsigned char rx_plain[US_WIRE_MAX];
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
    if (G.fd < 0)
        return;
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
static bool g_killed_alive[G_MAX_GROUPS]; /* wait_gone's last look, by G.killed index */

static void wait_gone(int n)
{
    pid_t pgids[G_MAX_GROUPS];
    for (int i = 0; i < n; i++)
        pgids[i] = G.killed[i].pgid;
    int64_t deadline = mono_ns() + G_GONE_WAIT_NS;
    while (us_pgrps_alive(pgids, n, g_killed_alive) > 0 && mono_ns() < deadline)
        sleep_until_ns(mono_ns() + 1000000);
}

/* Queue the gone fence_on_lease groups among G.killed for announcement (gone as wait_gone last
 * saw them); true if any was. */
static bool announce_killed(int n)
{
    bool any = false;
    for (int i = 0; i < n; i++) {
        if (!G.killed[i].fence)
            continue;
        if (g_killed_alive[i]) {
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

static void stop_listening(void)
{
    if (G.listen_fd >= 0) {
        close(G.listen_fd);
        unlink(G.path);
        G.listen_fd = -1;
    }
}

static void __attribute__((noreturn)) agent_gone(void)
{
    stop_listening();
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
    stop_listening();
    int n = kill_groups(false);
    drop_vips();
    wait_gone(n);
    _exit(0);
}

/* ---- the stand-in: lease renewals while no agent runs ---- */

static int64_t mono_ms(void)
{
    return mono_ns() / 1000000;
}

static void standin_ping(void)
{
    uint64_t r = ++G.round;
    int64_t now = mono_ms();
    G.round_sent_ms[r % 256] = now;
    char json[160];
    /* No "rep" and no "gr": receivers keep this node's last reports (msg.h). */
    int len = snprintf(json, sizeof json,
                       "{\"t\":\"ping\",\"seq\":\"%llu\",\"term\":\"0\",\"lease\":true}",
                       (unsigned long long)r);
    for (int i = 0; i < G.n_voters; i++) {
        if (G.voters[i].self)
            continue;
        us_wire_hdr h = {
            .chan = US_CHAN_AGENT, .inc = G.inc, .seq = ++G.agent_seq, .to_inc = G.voters[i].inc};
        us_strlcpy(h.sender, G.node, sizeof h.sender);
        unsigned char nonce[24];
        if (getrandom(nonce, sizeof nonce, 0) != (ssize_t)sizeof nonce)
            continue;
        size_t dlen = us_wire_seal_nonce(&G.keys, G.cluster, &h, json, (size_t)len, nonce, G.sealed,
                                         sizeof G.sealed);
        if (dlen)
            sendto(G.agent_udp, G.sealed, dlen, MSG_DONTWAIT | MSG_NOSIGNAL,
                   (struct sockaddr *)&G.voters[i].sa, sizeof G.voters[i].sa);
    }
    G.next_ping_ns = mono_ns() + (int64_t)G.hb_ms * 1000000LL;
}

/* The decimal string value of "key":"123" in a compact JSON text; false if absent. */
static bool json_u64_at(const char *s, const char *key, uint64_t *out)
{
    const char *p = strstr(s, key);
    if (!p)
        return false;
    p += strlen(key);
    if (*p != '"' || p[1] < '0' || p[1] > '9')
        return false;
    *out = strtoull(p + 1, NULL, 10);
    return true;
}

static void standin_recompute(void)
{
    us_lease_granter g[G_MAX_PEERS];
    for (int i = 0; i < G.n_voters; i++)
        g[i] = G.voters[i].self ? (us_lease_granter){.self = true} : G.voters[i].gr;
    us_timing t = {.lease_ms = G.lease_ms};
    int64_t cur = G.lease_ns / 1000000;
    int64_t until = us_lease_until(&t, g, G.n_voters, G.version, mono_ms(), cur);
    if (until > cur)
        G.lease_ns = until * 1000000LL;
}

/* A datagram on the agent's socket: pongs to our rounds grant renewals; anything else only
 * tells us its sender's incarnation. Sealed with the cluster key or ignored. */
static void standin_rx(void)
{
    for (int k = 0; k < 64; k++) {
        ssize_t n = recv(G.agent_udp, G.rx, sizeof G.rx, MSG_DONTWAIT);
        if (n <= 0)
            return;
        us_wire_hdr h;
        size_t plen = 0;
        if (us_wire_open(&G.keys, G.cluster, G.rx, (size_t)n, &h, G.rx_plain, &plen) !=
                US_WIRE_OK ||
            h.chan != US_CHAN_AGENT || plen >= sizeof G.rx_plain)
            continue;
        G.rx_plain[plen] = '\0';
        int i;
        for (i = 0; i < G.n_voters; i++)
            if (!G.voters[i].self && strcmp(G.voters[i].name, h.sender) == 0)
                break;
        if (i == G.n_voters)
            continue;
        if (h.inc > G.voters[i].inc)
            G.voters[i].inc = h.inc; /* address the next pings to it */
        const char *s = (const char *)G.rx_plain;
        uint64_t r, v;
        if (h.to_inc != G.inc || !strstr(s, "\"t\":\"pong\"") || !strstr(s, "\"grant\":true") ||
            !json_u64_at(s, "\"seq\":", &r) || !json_u64_at(s, "\"v\":", &v) || r == 0 ||
            r > G.round || G.round - r >= 256)
            continue;
        json_u64_at(s, "\"rv\":", &v); /* the voter's roles_v of us, if it says (msg.h) */
        us_lease_granter_update(&G.voters[i].gr, G.round_sent_ms[r % 256], v, G.version);
        standin_recompute();
    }
}

/* Renew only while every active group still runs: an active that died is fenced (and
 * announced) at the lease end instead of being covered up until the next agent comes. */
static bool standin_worth_it(void)
{
    for (int i = 0; i < G.n_groups; i++)
        if (G.groups[i].fence && !us_pgrp_alive(G.groups[i].pgid))
            return false;
    return true;
}

static void standin_stop(void)
{
    if (G.agent_udp >= 0)
        close(G.agent_udp);
    G.agent_udp = -1;
    G.renewing = false;
}

/* ---- planned agent restart: wait for the next agent, hand over to it ---- */

static void send_fd(int fd, const g_msg *m)
{
    struct iovec iov = {.iov_base = (void *)m, .iov_len = sizeof *m};
    union {
        char buf[CMSG_SPACE(sizeof(int))];
        struct cmsghdr align;
    } c;
    memset(&c, 0, sizeof c);
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
    if (fd >= 0) {
        mh.msg_control = c.buf;
        mh.msg_controllen = sizeof c.buf;
        struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
        cm->cmsg_level = SOL_SOCKET;
        cm->cmsg_type = SCM_RIGHTS;
        cm->cmsg_len = CMSG_LEN(sizeof(int));
        memcpy(CMSG_DATA(cm), &fd, sizeof fd);
    }
    /* Blocking: the next agent reads the whole hand-over before it does anything else. */
    while (sendmsg(G.fd, &mh, MSG_NOSIGNAL) < 0 && errno == EINTR)
        ;
}

/* The agent left on purpose (its EOF after M_DETACH): keep everything, fence by the lease, and
 * wait at G.path for the next agent. Without a usable socket the wait cannot work: as if the
 * agent died. */
static void begin_detached(void)
{
    G.fd = -1;
    G.detached = true;
    G.detach_pending = false;
    /* Bound and listening under a temporary name, then renamed into place: a connect that
     * found the socket file bound but not yet listening would be refused, and the next agent
     * takes a refused socket file for one left by a dead guardian and removes it. */
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    char tmp[sizeof sa.sun_path];
    bool ok = snprintf(tmp, sizeof tmp, "%s.new", G.path) < (int)sizeof tmp;
    us_strlcpy(sa.sun_path, ok ? tmp : G.path, sizeof sa.sun_path);
    unlink(sa.sun_path);
    G.listen_fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    mode_t old = umask(077);
    ok = G.listen_fd >= 0 && bind(G.listen_fd, (struct sockaddr *)&sa, sizeof sa) == 0 &&
         listen(G.listen_fd, 4) == 0 &&
         (strcmp(sa.sun_path, G.path) == 0 || rename(sa.sun_path, G.path) == 0);
    umask(old);
    if (!ok) {
        us_error("guardian: cannot wait for the next agent at %s: %s", G.path, strerror(errno));
        if (strcmp(sa.sun_path, G.path) != 0)
            unlink(sa.sun_path);
        agent_gone();
    }
    G.renewing = G.agent_udp >= 0 && G.n_voters > 0 && G.hb_ms > 0 && G.lease_ms > 0;
    if (G.renewing) {
        for (int i = 0; i < G.n_voters; i++)
            G.voters[i].gr = us_lease_granter_new();
        G.next_ping_ns = mono_ns();
    }
    us_info("guardian: the agent left for a restart; %s, waiting at %s",
            G.renewing ? "renewing the lease with the voters meanwhile" : "fencing by the lease",
            G.path);
}

/* A connection at the socket: only from our own user (or root). */
static void accept_next(void)
{
    int c = accept4(G.listen_fd, NULL, NULL, SOCK_CLOEXEC);
    if (c < 0)
        return;
    struct ucred cr;
    socklen_t len = sizeof cr;
    if (getsockopt(c, SOL_SOCKET, SO_PEERCRED, &cr, &len) != 0 ||
        (cr.uid != getuid() && cr.uid != 0)) {
        close(c);
        return;
    }
    /* The latest wins: an earlier one that has not adopted (a next agent that died starting,
     * whose EOF we have not read yet) is dropped. */
    if (G.fd >= 0)
        close(G.fd);
    G.fd = c;
}

/* The next agent takes over: tell it what we hold, then serve it as we served the last one. */
static void adopt(uint64_t inc)
{
    standin_stop(); /* the next agent binds the datagram socket itself */
    stop_listening();
    G.detached = false;
    uint64_t old_inc = G.inc;
    G.inc = inc;
    g_msg m;
    for (int i = 0; i < G.n_groups; i++) {
        memset(&m, 0, sizeof m);
        m.type = M_GROUP;
        m.pgid = G.groups[i].pgid;
        m.fence = G.groups[i].fence;
        m.epoch = G.groups[i].epoch;
        memcpy(m.service, G.groups[i].service, sizeof m.service);
        send_fd(-1, &m);
    }
    for (int i = 0; i < G.n_vips; i++) {
        memset(&m, 0, sizeof m);
        m.type = M_VIP;
        m.fence = 1;
        m.vip = G.vips[i];
        send_fd(-1, &m);
    }
    for (int i = 0; i < G.n_fds; i++) {
        memset(&m, 0, sizeof m);
        m.type = M_FD;
        memcpy(m.path, G.fd_tag[i], sizeof m.path);
        send_fd(G.fds[i], &m);
        close(G.fds[i]); /* the one in flight keeps the socket open */
    }
    G.n_fds = 0;
    memset(&m, 0, sizeof m);
    m.type = M_END;
    m.deadline_ns = G.lease_ns;
    m.epoch = G.version;
    m.pgid = (int32_t)getpid();
    m.inc = old_inc;
    send_fd(-1, &m);
    us_info("guardian: handed %d process group(s) over to the next agent", G.n_groups);
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
        /* Addresses pgid .. pgid + n_peers - 1 of a list of `epoch`. */
        if (m->pgid < 0 || m->n_peers > G_PEERS_PER_MSG || m->epoch > G_MAX_PEERS ||
            (uint64_t)m->pgid + m->n_peers > m->epoch)
            return;
        memcpy(&G.peers[m->pgid], m->peers, m->n_peers * sizeof m->peers[0]);
        G.n_peers = (int)m->epoch;
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
    case M_DETACH:
        G.detach_pending = true;
        memcpy(G.path, m->path, sizeof G.path);
        G.path[sizeof G.path - 1] = '\0';
        G.version = m->epoch;
        G.give_up_ns = m->deadline_ns;
        G.hb_ms = m->hb_ms;
        G.lease_ms = m->lease_ms;
        G.agent_seq = m->seq;
        return;
    case M_VOTER:
        if (G.n_voters < G_MAX_PEERS) {
            memset(&G.voters[G.n_voters], 0, sizeof G.voters[0]);
            memcpy(G.voters[G.n_voters].name, m->service, sizeof G.voters[0].name);
            G.voters[G.n_voters].name[sizeof G.voters[0].name - 1] = '\0';
            G.voters[G.n_voters].sa = m->peers[0];
            G.voters[G.n_voters].inc = m->epoch;
            G.voters[G.n_voters].self = m->fence != 0;
            G.n_voters++;
        }
        return;
    case M_ADOPT:
        if (G.detached)
            adopt(m->epoch);
        return;
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
    G.listen_fd = -1;
    G.agent_udp = -1;
    fcntl(G.fd, F_SETFD, FD_CLOEXEC);

    /* The guardian must outlive an agent killed for memory. Needs privilege; best effort. */
    int oom = open("/proc/self/oom_score_adj", O_WRONLY | O_CLOEXEC);
    if (oom >= 0) {
        (void)!write(oom, "-1000", 5);
        close(oom);
    }
    /* The fence must act first when the agent dies: service processes no longer die with their
     * agent by a parent-death signal (they may outlive it for a planned restart), so it is the
     * guardian's SIGKILL that ends them, however loaded the machine. It only ever blocks in poll
     * and does little when it wakes. Needs privilege; best effort. */
    struct sched_param sp = {.sched_priority = 1};
    sched_setscheduler(0, SCHED_FIFO | SCHED_RESET_ON_FORK, &sp);

    us_strlcpy(G.node, node, sizeof G.node);
    G.inc = inc;
    G.keys = *keys;
    us_strlcpy(G.cluster, cluster, sizeof G.cluster);
    G.udp = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);

    for (;;) {
        int64_t now = mono_ns();
        /* Without an agent (or before the next one adopted), the lease end is the end: kill
         * everything and announce, as when the agent dies. */
        if (G.detached && ((G.lease_ns && now >= G.lease_ns) ||
                           (!G.lease_ns && G.give_up_ns && now >= G.give_up_ns)))
            agent_gone();
        if (G.renewing && (now >= G.give_up_ns || !standin_worth_it())) {
            us_warn("guardian: %s; no more renewals, fencing at the lease end",
                    now >= G.give_up_ns ? "no agent came back in time" : "an active instance died");
            standin_stop();
        }
        if (G.renewing && now >= G.next_ping_ns) {
            standin_ping();
            now = mono_ns();
        }
        if (G.lease_ns && now >= G.lease_ns) {
            fence_lease();
            now = mono_ns();
        }
        if (G.ann_left > 0 && now >= G.ann_next_ns) {
            announce_once();
            continue;
        }
        int64_t wake = G.lease_ns;
        if (G.detached && !wake)
            wake = G.give_up_ns;
        if (G.renewing && (!wake || G.next_ping_ns < wake))
            wake = G.next_ping_ns;
        if (G.ann_left > 0 && (!wake || G.ann_next_ns < wake))
            wake = G.ann_next_ns;
        struct timespec ts, *tp = NULL;
        if (wake) {
            int64_t rel = wake > now ? wake - now : 0;
            ts.tv_sec = (time_t)(rel / 1000000000LL);
            ts.tv_nsec = (long)(rel % 1000000000LL);
            tp = &ts;
        }
        struct pollfd pfd[3] = {{.fd = G.fd, .events = POLLIN},
                                {.fd = G.listen_fd, .events = POLLIN},
                                {.fd = G.renewing ? G.agent_udp : -1, .events = POLLIN}};
        if (ppoll(pfd, 3, tp, NULL) <= 0)
            continue;
        if (pfd[2].revents & POLLIN)
            standin_rx();
        if (pfd[1].revents & POLLIN)
            accept_next();
        if (G.fd < 0 || !(pfd[0].revents & (POLLIN | POLLHUP | POLLERR)))
            continue;
        for (;;) {
            g_msg m;
            union {
                char buf[CMSG_SPACE(sizeof(int))];
                struct cmsghdr align;
            } c;
            struct iovec iov = {.iov_base = &m, .iov_len = sizeof m};
            struct msghdr mh = {.msg_iov = &iov,
                                .msg_iovlen = 1,
                                .msg_control = c.buf,
                                .msg_controllen = sizeof c.buf};
            ssize_t n = recvmsg(G.fd, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
            if (n < 0 && errno == EINTR)
                continue;
            if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
                break;
            int fd = -1;
            struct cmsghdr *cm = n > 0 ? CMSG_FIRSTHDR(&mh) : NULL;
            if (cm && cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_RIGHTS)
                memcpy(&fd, CMSG_DATA(cm), sizeof fd);
            if (n <= 0) {
                /* EOF (or reset) without a stop message */
                if (G.detach_pending) {
                    close(G.fd);
                    begin_detached();
                    break;
                }
                if (G.detached) { /* a connection that never adopted */
                    close(G.fd);
                    G.fd = -1;
                    break;
                }
                agent_gone();
            }
            if (n == (ssize_t)sizeof m && m.type == M_UDP && fd >= 0 && G.agent_udp < 0) {
                G.agent_udp = fd;
                continue;
            }
            if (n == (ssize_t)sizeof m && m.type == M_FD && fd >= 0 && G.n_fds < G_MAX_FDS) {
                G.fds[G.n_fds] = fd;
                memcpy(G.fd_tag[G.n_fds], m.path, sizeof G.fd_tag[0]);
                G.fd_tag[G.n_fds][sizeof G.fd_tag[0] - 1] = '\0';
                G.n_fds++;
                continue;
            }
            if (fd >= 0)
                close(fd);
            if (n == (ssize_t)sizeof m && !(G.detached && m.type != M_ADOPT && m.type != M_STOP))
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
    struct sockaddr_in sa[G_MAX_PEERS];
    for (int i = 0; i < n; i++)
        if (us_sockaddr_parse(peers[i], &sa[i]) < 0) {
            us_warn("guardian peer \"%s\": expected IPv4:port", peers[i]);
            return -EINVAL;
        }
    /* The last message sent holds the first addresses: a guardian of the previous version
     * (which took each message for the whole list) keeps those. */
    int first = n > 0 ? (n - 1) / G_PEERS_PER_MSG * G_PEERS_PER_MSG : 0;
    for (;; first -= G_PEERS_PER_MSG) {
        g_msg m;
        memset(&m, 0, sizeof m);
        m.type = M_PEERS;
        m.pgid = first;
        m.epoch = (uint64_t)n;
        m.n_peers = (uint32_t)(n - first < G_PEERS_PER_MSG ? n - first : G_PEERS_PER_MSG);
        memcpy(m.peers, &sa[first], m.n_peers * sizeof sa[0]);
        int rc = send_msg(g, &m);
        if (rc != 0 || first == 0)
            return rc;
    }
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
    if (g->attached) {
        /* Not our child: its exit closes its end (bounded: it waits at most 1 s for groups). */
        shutdown(g->fd, SHUT_WR);
        struct pollfd pfd = {.fd = g->fd, .events = POLLIN};
        int64_t end = mono_ns() + 5000 * 1000000LL;
        for (;;) {
            int64_t left = (end - mono_ns()) / 1000000;
            if (left <= 0 || poll(&pfd, 1, (int)left) <= 0)
                break;
            char buf[sizeof(g_msg)];
            if (recv(g->fd, buf, sizeof buf, MSG_DONTWAIT) == 0)
                break;
        }
        close(g->fd);
    } else {
        close(g->fd);
        while (waitpid(g->pid, NULL, 0) < 0 && errno == EINTR)
            ;
    }
    free(g);
}

/* Send `m` with `fd` attached (SCM_RIGHTS). */
static int send_msg_fd(us_guardian *g, const g_msg *m, int fd)
{
    struct iovec iov = {.iov_base = (void *)m, .iov_len = sizeof *m};
    union {
        char buf[CMSG_SPACE(sizeof(int))];
        struct cmsghdr align;
    } c;
    memset(&c, 0, sizeof c);
    struct msghdr mh = {
        .msg_iov = &iov, .msg_iovlen = 1, .msg_control = c.buf, .msg_controllen = sizeof c.buf};
    struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
    cm->cmsg_level = SOL_SOCKET;
    cm->cmsg_type = SCM_RIGHTS;
    cm->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(cm), &fd, sizeof fd);
    ssize_t n;
    do
        n = sendmsg(g->fd, &mh, MSG_DONTWAIT | MSG_NOSIGNAL);
    while (n < 0 && errno == EINTR);
    if (n < 0)
        return -errno;
    return n == (ssize_t)sizeof *m ? 0 : -EIO;
}

int us_guardian_pass_fd(us_guardian *g, int fd, const char *tag)
{
    g_msg m;
    memset(&m, 0, sizeof m);
    m.type = M_FD;
    if (!us_strlcpy(m.path, tag, sizeof m.path))
        return -ENAMETOOLONG;
    return send_msg_fd(g, &m, fd);
}

int us_guardian_standin(us_guardian *g, int udp_fd, const us_guardian_voter *v, int n)
{
    if (n > G_MAX_PEERS)
        n = G_MAX_PEERS;
    for (int i = 0; i < n; i++) {
        g_msg m;
        memset(&m, 0, sizeof m);
        m.type = M_VOTER;
        us_strlcpy(m.service, v[i].name, sizeof m.service);
        m.epoch = v[i].inc;
        m.fence = v[i].self;
        if (!v[i].self && us_sockaddr_parse(v[i].address, &m.peers[0]) < 0)
            continue;
        int rc = send_msg(g, &m);
        if (rc < 0)
            return rc;
    }
    g_msg m;
    memset(&m, 0, sizeof m);
    m.type = M_UDP;
    return send_msg_fd(g, &m, udp_fd);
}

int us_guardian_detach(us_guardian *g, const char *path, uint64_t version, int64_t give_up_ns,
                       int hb_ms, int lease_ms, uint64_t seq)
{
    g_msg m;
    memset(&m, 0, sizeof m);
    m.type = M_DETACH;
    m.epoch = version;
    m.deadline_ns = give_up_ns;
    m.hb_ms = hb_ms;
    m.lease_ms = lease_ms;
    m.seq = seq;
    if (!us_strlcpy(m.path, path, sizeof m.path))
        return -ENAMETOOLONG;
    return send_msg(g, &m);
}

void us_guardian_leave(us_guardian *g)
{
    if (!g)
        return;
    close(g->fd);
    free(g);
}

static int recv_msg_fd(int fd, g_msg *m, int *passed, int64_t end_ns)
{
    *passed = -1;
    for (;;) {
        int64_t left = (end_ns - mono_ns()) / 1000000;
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        if (left <= 0)
            return -ETIMEDOUT;
        int pr = poll(&pfd, 1, (int)left);
        if (pr < 0 && errno == EINTR)
            continue;
        if (pr <= 0)
            return -ETIMEDOUT;
        union {
            char buf[CMSG_SPACE(sizeof(int))];
            struct cmsghdr align;
        } c;
        struct iovec iov = {.iov_base = m, .iov_len = sizeof *m};
        struct msghdr mh = {
            .msg_iov = &iov, .msg_iovlen = 1, .msg_control = c.buf, .msg_controllen = sizeof c.buf};
        ssize_t n = recvmsg(fd, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
        if (n < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        if (n < 0)
            return -errno;
        if (n == 0)
            return -EPIPE;
        struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
        if (cm && cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_RIGHTS)
            memcpy(passed, CMSG_DATA(cm), sizeof *passed);
        if (n != (ssize_t)sizeof *m) {
            if (*passed >= 0)
                close(*passed);
            *passed = -1;
            continue;
        }
        return 0;
    }
}

int us_guardian_connect(const char *path, us_guardian **out)
{
    *out = NULL;
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (!us_strlcpy(sa.sun_path, path, sizeof sa.sun_path))
        return -ENAMETOOLONG;
    int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        int e = errno;
        close(fd);
        /* A socket file nobody listens at was left by a guardian that is gone (a waiting
         * guardian renames its socket into place only once it listens). Not on ENOENT: a
         * guardian may have put its socket there since. */
        if (e == ECONNREFUSED)
            unlink(path);
        if (e == ECONNREFUSED || e == ENOENT)
            return -ENOENT;
        return -e;
    }
    struct ucred cr;
    socklen_t len = sizeof cr;
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &len) != 0) {
        int e = errno;
        close(fd);
        return -e;
    }
    us_guardian *g = calloc(1, sizeof *g);
    if (!g) {
        close(fd);
        return -ENOMEM;
    }
    g->fd = fd;
    g->pid = cr.pid;
    g->attached = true;
    *out = g;
    return 0;
}

int us_guardian_adopt(us_guardian *g, uint64_t inc, us_guardian_handover *h)
{
    memset(h, 0, sizeof *h);
    int fd = g->fd;
    g_msg m;
    memset(&m, 0, sizeof m);
    m.type = M_ADOPT;
    m.epoch = inc;
    int rc = send_msg(g, &m);
    int64_t end = mono_ns() + 2000 * 1000000LL;
    while (rc == 0) {
        int passed;
        rc = recv_msg_fd(fd, &m, &passed, end);
        if (rc < 0)
            break;
        if (m.type == M_FD && passed >= 0 && h->n_fds < US_GUARDIAN_MAX_FDS) {
            h->fds[h->n_fds] = passed;
            memcpy(h->fd_tag[h->n_fds], m.path, sizeof h->fd_tag[0]);
            h->fd_tag[h->n_fds][sizeof h->fd_tag[0] - 1] = '\0';
            h->n_fds++;
            continue;
        }
        if (passed >= 0)
            close(passed);
        if (m.type == M_GROUP && h->n_groups < US_GUARDIAN_MAX_GROUPS) {
            us_guardian_group *x = &h->groups[h->n_groups++];
            x->pgid = m.pgid;
            x->fence = m.fence != 0;
            x->epoch = m.epoch;
            memcpy(x->service, m.service, sizeof x->service);
            x->service[sizeof x->service - 1] = '\0';
        } else if (m.type == M_VIP && g->n_vips < US_GUARDIAN_MAX_VIPS) {
            g->vips[g->n_vips++] = m.vip;
        } else if (m.type == M_END) {
            h->lease_ns = m.deadline_ns;
            h->version = m.epoch;
            h->inc = m.inc;
            if (m.pgid != g->pid) {
                rc = -EPROTO;
                break;
            }
            h->n_vips = g->n_vips;
            memcpy(h->vips, g->vips, sizeof h->vips[0] * (size_t)g->n_vips);
            return 0;
        }
    }
    for (int i = 0; i < h->n_fds; i++)
        close(h->fds[i]);
    h->n_fds = 0;
    return rc < 0 ? rc : -EPROTO;
}
