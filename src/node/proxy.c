/* proxy.c — see proxy.h.
 *
 * A connection is in exactly one of three lists: held (no target; sorted by hold deadline, one
 * timer for the earliest), connecting (an attempt in flight, or waiting RETRY_MS before the next)
 * or open (forwarding).
 *
 * A target that refuses (or times out) is marked down: from then on connections are held, and
 * only one at a time (the earliest deadline) tries again, every RETRY_MS; the first that gets
 * through releases all held ones. Without that gate every held connection would retry on its own
 * timer: two thousand connections held during a switchover to a cold standby make a hundred
 * thousand connects a second while the new server starts, and the event loop that must also
 * renew the agent's lease falls behind. The client socket is not polled before the connection is
 * open: whatever the client sends meanwhile waits in its socket buffer and is spliced on as soon as
 * the backend answers.
 *
 * Readiness comes from an epoll set of our own, which libuv polls through a single uv_poll
 * handle. A uv_poll per socket would cost five more syscalls per socket (uv_poll_init probes the
 * fd with epoll ADD+DEL and an ioctl; stopping deletes it again), a third of the syscalls of a
 * short connection. A socket is deleted from the set before it is closed, because a child forked
 * by the supervisor may briefly hold a duplicate and keep the registration alive. A connection
 * closed while a batch of events is being dispatched is freed after the batch, so a later event
 * of the same batch cannot reach freed memory (nor a new connection at the same address). */
#include "node/proxy.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "lib/log.h"
#include "lib/listen.h"

#define BACKLOG 1024
#define PIPE_SIZE (64 * 1024)
#define RETRY_MS 20
#define LOG_EVERY_MS 5000
#define PUMP_ROUNDS 16    /* splices per direction and wakeup, so one busy conn cannot starve */
#define ACCEPT_BURST 1024 /* accepts per wakeup, same reason */
#define EVENTS_BATCH 256
#define ACCEPT_PAUSE_MS 100
#define PIPE_POOL 128 /* empty pipes kept for reuse: saves 4 syscalls per short connection */
#define DEFAULT_MAX_CONNS 4096
#define DEFAULT_CONNECT_TIMEOUT_MS 1000

#define EV_LISTENER 0u /* epoll data of the listener; connections use their address */
#define EV_BACKEND 1u  /* low bit of a connection's epoll data: the backend socket */

enum cstate { C_HELD, C_CONNECTING, C_OPEN };

/* One direction: src socket -> pipe -> dst socket. */
typedef struct dir {
    int pipe[2];
    size_t n;  /* bytes in the pipe */
    bool eof;  /* src sent FIN */
    bool done; /* FIN passed on to dst */
    bool dry;  /* the last read found nothing, or no room in the pipe */
    uint64_t bytes;
} dir;

typedef struct conn conn;
struct conn {
    us_proxy *p;
    conn *prev, *next;
    enum cstate state;
    bool dead; /* closed during a batch, freed after it */
    int cfd, bfd;
    uint32_t cev, bev; /* epoll events registered (0 = not in the set) */
    uv_timer_t *timer; /* connect timeout, or the delay before a retry */
    uint64_t deadline; /* hold deadline, loop time */
    uint64_t epoch;    /* target epoch the backend was chosen under (open only) */
    uint32_t src;      /* the client's IPv4 address (network order) */
    uint64_t active;   /* loop time of the last readiness of an open connection */
    dir up, down;      /* client -> backend, backend -> client */
};

typedef struct clist {
    conn *head, *tail;
    int n;
} clist;

typedef struct ratelog {
    uint64_t at;         /* loop time of the last line */
    uint64_t suppressed; /* events since, not logged */
    bool ever;
} ratelog;

struct us_proxy {
    uv_loop_t *loop;
    char name[64];
    char listen[64];
    int hold_ms, max_conns, connect_timeout_ms, max_per_source, idle_ms;
    int lfd, epfd;
    uv_poll_t *epoll;
    uv_timer_t *hold_timer, *pause_timer, *idle_timer;
    bool has_target;
    bool down;    /* the target refused: hold, one attempt at a time (probe) */
    conn *prober; /* that attempt, NULL if none is in flight */
    uv_timer_t *probe_timer;
    struct sockaddr_in target;
    uint64_t epoch;
    clist held, connecting, open;
    bool in_batch;
    conn *graveyard; /* closed during the current batch, chained by next */
    uint64_t accepted, forwarded, failed, refused_limit, refused_source, idle_closed;
    ratelog limit_log, fail_log, accept_log, source_log;
    int pool[PIPE_POOL][2];
    int npool;
    int handles; /* allocated libuv handles not yet closed */
    bool stopped;
};

/* ---- small helpers ---- */

static void fmt_addr(const struct sockaddr_in *sa, char *buf, size_t len)
{
    char ip[INET_ADDRSTRLEN] = "?";
    inet_ntop(AF_INET, &sa->sin_addr, ip, sizeof ip);
    snprintf(buf, len, "%s:%u", ip, (unsigned)ntohs(sa->sin_port));
}

/* strerror without the capital, to read well inside a sentence. */
static void errstr(int e, char *buf, size_t len)
{
    snprintf(buf, len, "%s", strerror(e));
    if (buf[0] >= 'A' && buf[0] <= 'Z' && !(buf[1] >= 'A' && buf[1] <= 'Z'))
        buf[0] = (char)(buf[0] - 'A' + 'a');
}

/* True when a line may be logged now; otherwise counts the event as suppressed. */
static bool ratelog_ok(us_proxy *p, ratelog *r)
{
    uint64_t now = uv_now(p->loop);
    if (r->ever && now - r->at < LOG_EVERY_MS) {
        r->suppressed++;
        return false;
    }
    r->ever = true;
    r->at = now;
    return true;
}

static void linger0(int fd)
{
    struct linger l = {.l_onoff = 1, .l_linger = 0};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
}

static void list_add(clist *l, conn *c)
{
    c->next = NULL;
    c->prev = l->tail;
    if (l->tail)
        l->tail->next = c;
    else
        l->head = c;
    l->tail = c;
    l->n++;
}

/* Held connections stay sorted by deadline; new ones almost always go last. */
static void list_add_sorted(clist *l, conn *c)
{
    conn *after = l->tail;
    while (after && after->deadline > c->deadline)
        after = after->prev;
    c->prev = after;
    c->next = after ? after->next : l->head;
    if (c->next)
        c->next->prev = c;
    else
        l->tail = c;
    if (after)
        after->next = c;
    else
        l->head = c;
    l->n++;
}

static void list_del(clist *l, conn *c)
{
    if (c->prev)
        c->prev->next = c->next;
    else
        l->head = c->next;
    if (c->next)
        c->next->prev = c->prev;
    else
        l->tail = c->prev;
    c->prev = c->next = NULL;
    l->n--;
}

static clist *list_of(us_proxy *p, enum cstate s)
{
    return s == C_HELD ? &p->held : s == C_CONNECTING ? &p->connecting : &p->open;
}

static void set_state(conn *c, enum cstate s)
{
    list_del(list_of(c->p, c->state), c);
    c->state = s;
    if (s == C_HELD)
        list_add_sorted(&c->p->held, c);
    else
        list_add(list_of(c->p, s), c);
}

/* ---- libuv handles: each allocated on its own, freed by its close callback ---- */

static void maybe_free(us_proxy *p)
{
    if (p->stopped && p->handles == 0)
        free(p);
}

static void handle_closed(uv_handle_t *h)
{
    us_proxy *p = h->data;
    free(h);
    p->handles--;
    maybe_free(p);
}

static void drop(us_proxy *p, void *handle)
{
    uv_handle_t *h = handle;
    if (!h)
        return;
    h->data = p; /* no callback of h runs after uv_close, only handle_closed */
    uv_close(h, handle_closed);
}

static uv_timer_t *timer_new(us_proxy *p, void *data)
{
    uv_timer_t *h = malloc(sizeof *h);
    if (!h)
        return NULL;
    uv_timer_init(p->loop, h);
    h->data = data;
    p->handles++;
    return h;
}

/* ---- the epoll set ---- */

/* Register fd for `ev` (0 = remove it); *cur remembers what is registered. Removing rather than
 * keeping an empty registration matters: epoll reports EPOLLHUP even for an empty mask, and a
 * half-closed socket that we are not ready to serve would wake us up over and over. */
static int ep_set(us_proxy *p, int fd, uint32_t *cur, uint32_t ev, uint64_t data)
{
    if (ev == *cur)
        return 0;
    struct epoll_event e = {.events = ev, .data.u64 = data};
    int op = *cur == 0 ? EPOLL_CTL_ADD : ev == 0 ? EPOLL_CTL_DEL : EPOLL_CTL_MOD;
    *cur = ev;
    return epoll_ctl(p->epfd, op, fd, &e) == 0 ? 0 : -errno;
}

static uint64_t tag(conn *c, bool backend)
{
    return (uint64_t)(uintptr_t)c | (backend ? EV_BACKEND : 0);
}

/* Remove fd from the set and close it. */
static void ep_close(us_proxy *p, int fd, uint32_t *cur, bool rst)
{
    if (fd < 0)
        return;
    ep_set(p, fd, cur, 0, 0);
    if (rst)
        linger0(fd);
    close(fd);
}

/* ---- pipes ---- */

static int pipe_get(us_proxy *p, dir *d)
{
    if (p->npool > 0) {
        p->npool--;
        d->pipe[0] = p->pool[p->npool][0];
        d->pipe[1] = p->pool[p->npool][1];
        return 0;
    }
    if (pipe2(d->pipe, O_NONBLOCK | O_CLOEXEC) != 0)
        return -errno;
    /* 64 KiB is the usual default; asking makes it explicit. When the per-user pipe budget is
     * exhausted the kernel refuses, and the pipe keeps working with less room. */
    (void)fcntl(d->pipe[1], F_SETPIPE_SZ, PIPE_SIZE);
    return 0;
}

static void pipe_put(us_proxy *p, dir *d)
{
    if (d->pipe[0] < 0)
        return;
    if (d->n == 0 && p->npool < PIPE_POOL && !p->stopped) {
        p->pool[p->npool][0] = d->pipe[0];
        p->pool[p->npool][1] = d->pipe[1];
        p->npool++;
    } else {
        close(d->pipe[0]);
        close(d->pipe[1]);
    }
    d->pipe[0] = d->pipe[1] = -1;
}

/* ---- connection lifecycle ---- */

static void arm_hold(us_proxy *p);
static void start_connect(conn *c);

static void conn_close(conn *c, bool rst)
{
    us_proxy *p = c->p;
    bool was_held = c->state == C_HELD;
    if (p->prober == c)
        p->prober = NULL;
    list_del(list_of(p, c->state), c);
    if (was_held)
        arm_hold(p);
    drop(p, c->timer);
    c->timer = NULL;
    ep_close(p, c->cfd, &c->cev, rst);
    ep_close(p, c->bfd, &c->bev, rst);
    pipe_put(p, &c->up);
    pipe_put(p, &c->down);
    if (c->state == C_OPEN)
        us_debug("proxy %s: connection closed (epoch %llu, %llu bytes up, %llu down%s)", p->name,
                 (unsigned long long)c->epoch, (unsigned long long)c->up.bytes,
                 (unsigned long long)c->down.bytes, rst ? ", reset" : "");
    if (p->in_batch) {
        c->dead = true;
        c->next = p->graveyard;
        p->graveyard = c;
    } else {
        free(c);
    }
}

/* The client could not be forwarded: reset it so it sees an error, not an empty answer. */
static void conn_fail(conn *c, const char *why)
{
    us_proxy *p = c->p;
    p->failed++;
    if (ratelog_ok(p, &p->fail_log)) {
        if (p->fail_log.suppressed)
            us_warn("proxy %s: connection failed: %s (and %llu more in the last %d s)", p->name,
                    why, (unsigned long long)p->fail_log.suppressed, LOG_EVERY_MS / 1000);
        else
            us_warn("proxy %s: connection failed: %s", p->name, why);
        p->fail_log.suppressed = 0;
    }
    conn_close(c, true);
}

static void on_hold(uv_timer_t *t)
{
    us_proxy *p = t->data;
    uint64_t now = uv_now(p->loop);
    char why[96];
    snprintf(why, sizeof why, "no active within the hold time (%d ms)", p->hold_ms);
    while (p->held.head && p->held.head->deadline <= now)
        conn_fail(p->held.head, why); /* re-arms the timer */
}

static void arm_hold(us_proxy *p)
{
    if (p->stopped)
        return;
    if (!p->held.head) {
        uv_timer_stop(p->hold_timer);
        return;
    }
    uint64_t now = uv_now(p->loop), d = p->held.head->deadline;
    uv_timer_start(p->hold_timer, on_hold, d > now ? d - now : 0, 0);
}

static void hold(conn *c)
{
    set_state(c, C_HELD);
    if (c->p->held.head == c)
        arm_hold(c->p);
}

/* Give up the attempt in flight (socket, timer); the connection stays where it is. */
static void abort_attempt(conn *c)
{
    uv_timer_stop(c->timer);
    ep_close(c->p, c->bfd, &c->bev, true);
    c->bfd = -1;
}

static bool retryable(int e)
{
    switch (e) {
    case ECONNREFUSED:
    case ETIMEDOUT:
    case EHOSTUNREACH:
    case ENETUNREACH:
    case EHOSTDOWN:
    case ENETDOWN:
    case ECONNRESET:
    case EADDRNOTAVAIL: /* out of ephemeral ports for a moment */
    case EAGAIN:
        return true;
    default:
        return false;
    }
}

static void on_timer(uv_timer_t *t);

/* The target itself turned the attempt down (not a shortage of ours, like ports). */
static bool target_refused(int e)
{
    return retryable(e) && e != EADDRNOTAVAIL && e != EAGAIN;
}

/* While the target is down: the earliest held connection tries again, one at a time. */
static void on_probe(uv_timer_t *t)
{
    us_proxy *p = t->data;
    if (!p->has_target || !p->down || p->prober || !p->held.head)
        return;
    conn *c = p->held.head;
    set_state(c, C_CONNECTING);
    arm_hold(p);
    p->prober = c;
    start_connect(c);
}

static void arm_probe(us_proxy *p)
{
    if (!p->stopped && p->down && !uv_is_active((uv_handle_t *)p->probe_timer))
        uv_timer_start(p->probe_timer, on_probe, RETRY_MS, 0);
}

static void attempt_failed(conn *c, int e)
{
    us_proxy *p = c->p;
    abort_attempt(c);
    if (p->prober == c)
        p->prober = NULL;
    if (retryable(e) && uv_now(p->loop) + RETRY_MS < c->deadline) {
        if (target_refused(e))
            p->down = true;
        if (p->down) {
            hold(c);
            arm_probe(p);
            return;
        }
        uv_timer_start(c->timer, on_timer, RETRY_MS, 0);
        return;
    }
    char to[32], es[64], why[160];
    fmt_addr(&p->target, to, sizeof to);
    errstr(e, es, sizeof es);
    snprintf(why, sizeof why, "connect to %s: %s%s", to, es,
             retryable(e) ? " (retried until the hold time ran out)" : "");
    conn_fail(c, why);
}

static bool want_read(const dir *d)
{
    return !d->eof && (d->n == 0 || !d->dry);
}

/* Move what can be moved now in one direction; passes on EOF once the pipe is drained. */
static int pump(dir *d, int src, int dst)
{
    for (int i = 0; i < PUMP_ROUNDS; i++) {
        bool moved = false;
        if (!d->eof) {
            ssize_t r =
                splice(src, NULL, d->pipe[1], NULL, PIPE_SIZE, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
            if (r > 0) {
                d->n += (size_t)r;
                d->dry = false;
                moved = true;
            } else if (r == 0) {
                d->eof = true;
                moved = true;
            } else if (errno == EAGAIN) {
                d->dry = true;
            } else if (errno != EINTR) {
                return -errno;
            }
        }
        if (d->n > 0) {
            ssize_t w =
                splice(d->pipe[0], NULL, dst, NULL, d->n, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
            if (w > 0) {
                d->n -= (size_t)w;
                d->bytes += (uint64_t)w;
                moved = true;
            } else if (w < 0 && errno != EAGAIN && errno != EINTR) {
                return -errno;
            }
        }
        if (!moved)
            break;
    }
    if (d->eof && d->n == 0 && !d->done) {
        if (shutdown(dst, SHUT_WR) != 0)
            return -errno;
        d->done = true;
    }
    return 0;
}

/* After moving data: close when both directions are finished (or on an error), else wait for
 * exactly what is needed: reading where the pipe has room, writing where it has data. */
static void settle(conn *c, int rc)
{
    if (rc == 0 && c->up.done && c->down.done) {
        conn_close(c, false);
        return;
    }
    uint32_t cev = (want_read(&c->up) ? EPOLLIN : 0) | (c->down.n ? EPOLLOUT : 0);
    uint32_t bev = (want_read(&c->down) ? EPOLLIN : 0) | (c->up.n ? EPOLLOUT : 0);
    if (rc < 0 || ep_set(c->p, c->cfd, &c->cev, cev, tag(c, false)) != 0 ||
        ep_set(c->p, c->bfd, &c->bev, bev, tag(c, true)) != 0)
        conn_close(c, true);
}

/* Readiness of one socket of an open connection. EPOLLHUP counts as both readable and writable:
 * the read or write that follows tells what happened. */
static void on_ready(conn *c, bool backend, uint32_t ev)
{
    if (ev & EPOLLERR) {
        conn_close(c, true);
        return;
    }
    c->active = uv_now(c->p->loop);
    bool rd = ev & (EPOLLIN | EPOLLHUP), wr = ev & (EPOLLOUT | EPOLLHUP);
    dir *in = backend ? &c->down : &c->up, *out = backend ? &c->up : &c->down;
    int rc = 0;
    if (rd)
        rc = backend ? pump(in, c->bfd, c->cfd) : pump(in, c->cfd, c->bfd);
    if (rc == 0 && wr)
        rc = backend ? pump(out, c->cfd, c->bfd) : pump(out, c->bfd, c->cfd);
    settle(c, rc);
}

static void release_held(us_proxy *p);

static void established(conn *c)
{
    us_proxy *p = c->p;
    uv_timer_stop(c->timer);
    if (p->prober == c)
        p->prober = NULL;
    if (p->down) { /* the target takes connections again */
        p->down = false;
        uv_timer_stop(p->probe_timer);
        release_held(p);
    }
    set_state(c, C_OPEN);
    c->epoch = p->epoch;
    c->active = uv_now(p->loop);
    p->forwarded++;
    if (pipe_get(p, &c->up) != 0 || pipe_get(p, &c->down) != 0) {
        conn_close(c, true);
        return;
    }
    /* The request is most likely waiting in the client's socket already. */
    settle(c, pump(&c->up, c->cfd, c->bfd));
}

static void on_connect(conn *c, uint32_t ev)
{
    if (!(ev & (EPOLLERR | EPOLLHUP))) {
        established(c);
        return;
    }
    int e = 0;
    socklen_t len = sizeof e;
    if (getsockopt(c->bfd, SOL_SOCKET, SO_ERROR, &e, &len) != 0)
        e = errno;
    attempt_failed(c, e ? e : ECONNRESET);
}

static void start_connect(conn *c)
{
    us_proxy *p = c->p;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        attempt_failed(c, errno);
        return;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    int rc = connect(fd, (const struct sockaddr *)&p->target, sizeof p->target);
    if (rc != 0 && errno != EINPROGRESS) {
        int e = errno;
        close(fd);
        attempt_failed(c, e);
        return;
    }
    c->bfd = fd;
    if (rc == 0) {
        established(c);
        return;
    }
    int e = ep_set(p, fd, &c->bev, EPOLLOUT, tag(c, true));
    if (e != 0) {
        attempt_failed(c, -e);
        return;
    }
    uv_timer_start(c->timer, on_timer, (uint64_t)p->connect_timeout_ms, 0);
}

/* The connect timeout of the attempt in flight, or the end of the pause before the next one. */
static void on_timer(uv_timer_t *t)
{
    conn *c = t->data;
    if (c->bfd >= 0) {
        attempt_failed(c, ETIMEDOUT);
    } else if (c->p->has_target && !c->p->down) {
        start_connect(c);
    } else {
        hold(c);
        arm_probe(c->p);
    }
}

/* ---- accepting ---- */

static void admit(us_proxy *p, int fd, uint32_t src)
{
    conn *c = calloc(1, sizeof *c);
    if (!c || !(c->timer = timer_new(p, c))) {
        free(c);
        close(fd);
        return;
    }
    c->p = p;
    c->cfd = fd;
    c->src = src;
    c->bfd = -1;
    c->up.pipe[0] = c->up.pipe[1] = c->down.pipe[0] = c->down.pipe[1] = -1;
    c->deadline = uv_now(p->loop) + (uint64_t)p->hold_ms;
    p->accepted++;
    if (p->has_target && !p->down) {
        c->state = C_CONNECTING;
        list_add(&p->connecting, c);
        start_connect(c);
    } else {
        c->state = C_HELD;
        list_add_sorted(&p->held, c);
        if (p->held.head == c)
            arm_hold(p);
        arm_probe(p);
    }
}

static void refuse(us_proxy *p, int fd)
{
    close(fd);
    p->refused_limit++;
    if (ratelog_ok(p, &p->limit_log)) {
        us_warn("proxy %s: connection limit %d reached; refusing new connections (%llu refused "
                "so far)",
                p->name, p->max_conns, (unsigned long long)p->refused_limit);
        p->limit_log.suppressed = 0;
    }
}

/* Connections from one client address, in every state (bounded by max_conns). */
static int from_source(const us_proxy *p, uint32_t src)
{
    int n = 0;
    const clist *lists[] = {&p->held, &p->connecting, &p->open};
    for (size_t i = 0; i < sizeof lists / sizeof lists[0]; i++)
        for (const conn *c = lists[i]->head; c; c = c->next)
            n += c->src == src;
    return n;
}

static void refuse_source(us_proxy *p, int fd, uint32_t src)
{
    close(fd);
    p->refused_source++;
    if (ratelog_ok(p, &p->source_log)) {
        char ip[INET_ADDRSTRLEN] = "?";
        inet_ntop(AF_INET, &src, ip, sizeof ip);
        us_warn("proxy %s: %s holds %d connections (max_connections_per_source); refusing more "
                "(%llu refused so far)",
                p->name, ip, p->max_per_source, (unsigned long long)p->refused_source);
        p->source_log.suppressed = 0;
    }
}

/* Close forwarding connections that moved nothing for idle_ms (the oldest first). */
static void on_idle_sweep(uv_timer_t *t)
{
    us_proxy *p = t->data;
    uint64_t now = uv_now(p->loop);
    conn *next;
    for (conn *c = p->open.head; c; c = next) {
        next = c->next;
        if (now - c->active >= (uint64_t)p->idle_ms) {
            p->idle_closed++;
            conn_close(c, true);
        }
    }
}

static void on_pause_end(uv_timer_t *t)
{
    us_proxy *p = t->data;
    if (p->lfd < 0)
        return;
    struct epoll_event e = {.events = EPOLLIN, .data.u64 = EV_LISTENER};
    epoll_ctl(p->epfd, EPOLL_CTL_ADD, p->lfd, &e);
}

static void accept_ready(us_proxy *p)
{
    int e = 0;
    for (int i = 0; i < ACCEPT_BURST && !e; i++) {
        struct sockaddr_in from = {0};
        socklen_t fl = sizeof from;
        int fd = accept4(p->lfd, (struct sockaddr *)&from, &fl, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EAGAIN)
                return;
            if (errno == EINTR || errno == ECONNABORTED || errno == EPROTO || errno == EPERM)
                continue; /* that client is gone or was filtered; the next may be fine */
            e = errno;
            break;
        }
        if (p->held.n + p->connecting.n + p->open.n >= p->max_conns)
            refuse(p, fd);
        else if (p->max_per_source > 0 &&
                 2 * (p->held.n + p->connecting.n + p->open.n) >= p->max_conns &&
                 from_source(p, from.sin_addr.s_addr) >= p->max_per_source)
            refuse_source(p, fd, from.sin_addr.s_addr);
        else
            admit(p, fd, from.sin_addr.s_addr);
    }
    if (!e)
        return;
    /* Out of descriptors or memory: accepting again at once would spin, so pause briefly. */
    if (ratelog_ok(p, &p->accept_log)) {
        char es[64];
        errstr(e, es, sizeof es);
        us_warn("proxy %s: cannot accept on %s: %s; pausing %d ms", p->name, p->listen, es,
                ACCEPT_PAUSE_MS);
        p->accept_log.suppressed = 0;
    }
    epoll_ctl(p->epfd, EPOLL_CTL_DEL, p->lfd, NULL);
    uv_timer_start(p->pause_timer, on_pause_end, ACCEPT_PAUSE_MS, 0);
}

static void on_events(uv_poll_t *h, int status, int events)
{
    (void)status;
    (void)events;
    us_proxy *p = h->data;
    struct epoll_event ev[EVENTS_BATCH];
    int n = epoll_wait(p->epfd, ev, EVENTS_BATCH, 0);
    p->in_batch = true;
    for (int i = 0; i < n; i++) {
        uint64_t d = ev[i].data.u64;
        if (d == EV_LISTENER) {
            accept_ready(p);
            continue;
        }
        conn *c = (conn *)(uintptr_t)(d & ~(uint64_t)EV_BACKEND);
        if (c->dead || c->state == C_HELD)
            continue;
        if (c->state == C_CONNECTING)
            on_connect(c, ev[i].events);
        else
            on_ready(c, d & EV_BACKEND, ev[i].events);
    }
    p->in_batch = false;
    while (p->graveyard) {
        conn *c = p->graveyard;
        p->graveyard = c->next;
        free(c);
    }
}

/* ---- public ---- */

int us_proxy_start(uv_loop_t *loop, const char *listen_addr, const us_proxy_opts *o, us_proxy **out,
                   char *err, size_t errlen)
{
    *out = NULL;
    int fd =
        o->has_fd ? o->fd : us_tcp_listen(listen_addr, BACKLOG, US_LISTEN_NODELAY, err, errlen);
    if (fd < 0)
        return fd;
    us_proxy *p = calloc(1, sizeof *p);
    if (!p) {
        close(fd);
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    p->loop = loop;
    p->lfd = fd;
    snprintf(p->name, sizeof p->name, "%s", o->name ? o->name : "?");
    snprintf(p->listen, sizeof p->listen, "%s", listen_addr);
    p->hold_ms = o->hold_ms > 0 ? o->hold_ms : 0;
    p->max_conns = o->max_conns > 0 ? o->max_conns : DEFAULT_MAX_CONNS;
    p->connect_timeout_ms =
        o->connect_timeout_ms > 0 ? o->connect_timeout_ms : DEFAULT_CONNECT_TIMEOUT_MS;
    p->max_per_source = o->max_per_source > 0 ? o->max_per_source : 0;
    p->idle_ms = o->idle_ms > 0 ? o->idle_ms : 0;
    p->epfd = epoll_create1(EPOLL_CLOEXEC);
    p->hold_timer = timer_new(p, p);
    p->probe_timer = timer_new(p, p);
    p->pause_timer = timer_new(p, p);
    p->idle_timer = timer_new(p, p);
    p->epoll = malloc(sizeof *p->epoll);
    struct epoll_event e = {.events = EPOLLIN, .data.u64 = EV_LISTENER};
    int rc = p->epfd < 0 ? -errno : 0;
    if (rc == 0 &&
        (!p->hold_timer || !p->probe_timer || !p->pause_timer || !p->idle_timer || !p->epoll))
        rc = -ENOMEM;
    if (rc == 0 && p->idle_ms > 0) {
        uint64_t every = (uint64_t)(p->idle_ms / 4 > 1000 ? 1000 : p->idle_ms / 4 + 1);
        uv_timer_start(p->idle_timer, on_idle_sweep, every, every);
    }
    if (rc == 0 && epoll_ctl(p->epfd, EPOLL_CTL_ADD, fd, &e) != 0)
        rc = -errno;
    if (rc == 0 && (rc = uv_poll_init(loop, p->epoll, p->epfd)) == 0) {
        p->handles++;
        p->epoll->data = p;
        rc = uv_poll_start(p->epoll, UV_READABLE, on_events);
    } else {
        free(p->epoll);
        p->epoll = NULL;
    }
    if (rc != 0) {
        snprintf(err, errlen, "cannot poll the listener of %s: %s", listen_addr,
                 strerror(rc < 0 ? -rc : rc));
        us_proxy_stop(p);
        return rc;
    }
    *out = p;
    return 0;
}

static bool same_addr(const struct sockaddr_in *a, const struct sockaddr_in *b)
{
    return a->sin_addr.s_addr == b->sin_addr.s_addr && a->sin_port == b->sin_port;
}

void us_proxy_set_target(us_proxy *p, const struct sockaddr_in *backend, uint64_t epoch)
{
    bool moved =
        (p->has_target != (backend != NULL)) || (backend && !same_addr(&p->target, backend));
    p->epoch = epoch;
    p->has_target = backend != NULL;
    p->down = false; /* a new target gets its chance at once */
    p->prober = NULL;
    uv_timer_stop(p->probe_timer);
    if (backend) {
        p->target = *backend;
        char to[32];
        fmt_addr(backend, to, sizeof to);
        us_info("proxy %s: forwarding to %s (epoch %llu)", p->name, to, (unsigned long long)epoch);
    } else {
        us_info("proxy %s: no target (epoch %llu); holding new connections up to %d ms", p->name,
                (unsigned long long)epoch, p->hold_ms);
    }
    /* Attempts towards the old target are pointless now (and must not reach a demoting active). */
    if (moved) {
        for (conn *c = p->connecting.head, *next; c; c = next) {
            next = c->next;
            abort_attempt(c);
            if (p->has_target)
                start_connect(c);
            else
                hold(c);
        }
    }
    if (p->has_target)
        release_held(p);
}

/* Every held connection tries the target now. */
static void release_held(us_proxy *p)
{
    for (conn *c = p->held.head, *next; c; c = next) {
        next = c->next;
        set_state(c, C_CONNECTING);
        start_connect(c);
        if (p->down)
            break; /* it was refused at once: the rest stay held for the probe */
    }
    arm_hold(p);
}

int us_proxy_open_conns(const us_proxy *p, uint64_t epoch)
{
    int n = 0;
    for (const conn *c = p->open.head; c; c = c->next)
        n += c->epoch == epoch;
    return n;
}

void us_proxy_get_stats(const us_proxy *p, us_proxy_stats *st)
{
    st->accepted = p->accepted;
    st->forwarded = p->forwarded;
    st->failed = p->failed;
    st->refused_limit = p->refused_limit;
    st->refused_source = p->refused_source;
    st->idle_closed = p->idle_closed;
    st->held = p->held.n;
    st->connecting = p->connecting.n;
    st->open = p->open.n;
}

void us_proxy_stop(us_proxy *p)
{
    if (!p)
        return;
    p->stopped = true; /* no more timer re-arming nor pipe pooling */
    clist *lists[] = {&p->held, &p->connecting, &p->open};
    for (int i = 0; i < 3; i++)
        while (lists[i]->head)
            conn_close(lists[i]->head, true);
    drop(p, p->epoll); /* before closing the fd libuv polls */
    drop(p, p->hold_timer);
    drop(p, p->probe_timer);
    drop(p, p->pause_timer);
    drop(p, p->idle_timer);
    if (p->epfd >= 0)
        close(p->epfd);
    if (p->lfd >= 0)
        close(p->lfd);
    for (int i = 0; i < p->npool; i++) {
        close(p->pool[i][0]);
        close(p->pool[i][1]);
    }
    p->npool = 0;
    maybe_free(p);
}

int us_proxy_release_listener(us_proxy *p)
{
    if (p->lfd < 0)
        return -1;
    epoll_ctl(p->epfd, EPOLL_CTL_DEL, p->lfd, NULL);
    uv_timer_stop(p->pause_timer);
    int fd = p->lfd;
    p->lfd = -1;
    return fd;
}

bool us_proxy_idle(const us_proxy *p)
{
    return p->held.n + p->connecting.n + p->open.n == 0;
}
