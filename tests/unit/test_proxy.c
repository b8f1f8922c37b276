/* test_proxy.c — the failover-aware proxy against real TCP sockets on 127.0.0.1: data integrity,
 * holding, retries, target switches, per-epoch accounting, half-close, the connection limit,
 * listen errors and descriptor hygiene. The proxy runs on a uv loop in the test thread; backends
 * and bulk clients run in helper threads driven by poll(2). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "helpers.h"
#include "node/proxy.h"

static uv_loop_t loop;
static uv_timer_t tick;

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void tick_cb(uv_timer_t *t)
{
    (void)t;
}

/* One loop iteration; the 2 ms tick bounds how long it can block. */
static void turn(void)
{
    uv_run(&loop, UV_RUN_ONCE);
}

/* Run the loop until cond holds or ms pass; evaluates to cond. */
#define WAIT_FOR(cond, ms)                                                                         \
    __extension__({                                                                                \
        int64_t end_ = mono_ms() + (ms);                                                           \
        while (!(cond) && mono_ms() < end_)                                                        \
            turn();                                                                                \
        (bool)(cond);                                                                              \
    })

/* Run the loop for ms: for asserting that something does NOT happen within that time. */
static void spin(int ms)
{
    int64_t end = mono_ms() + ms;
    while (mono_ms() < end)
        turn();
}

static int setup(void **state)
{
    (void)state;
    assert_int_equal(uv_loop_init(&loop), 0);
    uv_timer_init(&loop, &tick);
    uv_timer_start(&tick, tick_cb, 2, 2);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    uv_close((uv_handle_t *)&tick, NULL);
    /* Only a stopped proxy's closing handles remain; after a failed assertion there may be
     * more, which are closed without ceremony. */
    for (int i = 0; i < 100 && uv_loop_alive(&loop); i++)
        uv_run(&loop, UV_RUN_NOWAIT);
    bool clean = !uv_loop_alive(&loop);
    ut_close_all(&loop);
    assert_int_equal(uv_loop_close(&loop), 0);
    assert_true(clean);
    return 0;
}

static struct sockaddr_in lo(int port)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return sa;
}

static int port_of(int fd)
{
    struct sockaddr_in sa;
    socklen_t len = sizeof sa;
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
    return ntohs(sa.sin_port);
}

/* A socket bound to an ephemeral port of 127.0.0.1, not listening yet. */
static int bound_socket(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in sa = lo(0);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    return fd;
}

static us_proxy_stats stats(const us_proxy *p)
{
    us_proxy_stats st;
    us_proxy_get_stats(p, &st);
    return st;
}

static us_proxy *proxy_up_opts(us_proxy_opts o, int *port)
{
    char addr[32], err[256] = "";
    for (int i = 0; i < 20; i++) {
        int fd = bound_socket();
        *port = port_of(fd);
        close(fd);
        snprintf(addr, sizeof addr, "127.0.0.1:%d", *port);
        us_proxy *p = NULL;
        int rc = us_proxy_start(&loop, addr, &o, &p, err, sizeof err);
        if (rc == 0)
            return p;
        if (rc != -EADDRINUSE)
            fail_msg("us_proxy_start(%s): %d %s", addr, rc, err);
    }
    fail_msg("no free port for the proxy");
    return NULL;
}

static us_proxy *proxy_up(int hold_ms, int max_conns, int connect_timeout_ms, int *port)
{
    return proxy_up_opts((us_proxy_opts){.name = "web",
                                         .hold_ms = hold_ms,
                                         .max_conns = max_conns,
                                         .connect_timeout_ms = connect_timeout_ms},
                         port);
}

static void set_target(us_proxy *p, int port, uint64_t epoch)
{
    struct sockaddr_in sa = lo(port);
    us_proxy_set_target(p, &sa, epoch);
}

static int count_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    assert_non_null(d);
    int n = 0;
    for (struct dirent *e; (e = readdir(d));)
        n += e->d_name[0] != '.';
    closedir(d);
    return n - 1; /* the directory's own descriptor */
}

static unsigned char reply_byte(size_t k)
{
    return (unsigned char)(k * 7 + (k >> 10));
}

/* ---- backend: one poll(2) thread; echo (after an optional tag byte) or, in reply mode, read
 * until EOF and then answer with reply_size pattern bytes ---- */

enum { B_ECHO, B_REPLY };
#define BMAX 600

typedef struct bconn {
    int fd;
    unsigned char *out;
    size_t len, off, cap;
    bool eof;
    size_t reply_left, reply_pos;
} bconn;

typedef struct backend {
    int lfd, port, efd, mode, listen_delay_ms;
    char tag;
    size_t reply_size;
    pthread_t th;
    atomic_int accepted;
} backend;

static void out_append(bconn *c, const void *data, size_t n)
{
    if (c->len + n > c->cap) {
        c->cap = (c->len + n) * 2;
        c->out = realloc(c->out, c->cap);
        assert_non_null(c->out);
    }
    memcpy(c->out + c->len, data, n);
    c->len += n;
}

/* Serve one readiness report; false when the connection is finished. */
static bool bconn_io(backend *b, bconn *c, short rev)
{
    if (rev & (POLLIN | POLLHUP | POLLERR)) {
        unsigned char buf[65536];
        ssize_t r = recv(c->fd, buf, sizeof buf, 0);
        if (r > 0 && b->mode == B_ECHO)
            out_append(c, buf, (size_t)r);
        else if (r == 0 && !c->eof) {
            c->eof = true;
            c->reply_left = b->mode == B_REPLY ? b->reply_size : 0;
        } else if (r < 0 && errno != EAGAIN)
            return false;
    }
    if (c->off == c->len && c->reply_left > 0) {
        c->off = c->len = 0;
        unsigned char chunk[65536];
        size_t n = c->reply_left < sizeof chunk ? c->reply_left : sizeof chunk;
        for (size_t i = 0; i < n; i++)
            chunk[i] = reply_byte(c->reply_pos + i);
        out_append(c, chunk, n);
        c->reply_pos += n;
        c->reply_left -= n;
    }
    if (c->off < c->len) {
        ssize_t w = send(c->fd, c->out + c->off, c->len - c->off, MSG_NOSIGNAL);
        if (w > 0)
            c->off += (size_t)w;
        else if (w < 0 && errno != EAGAIN)
            return false;
        if (c->off == c->len)
            c->off = c->len = 0;
    }
    return !(c->eof && c->off == c->len && c->reply_left == 0);
}

static void *backend_main(void *arg)
{
    backend *b = arg;
    bconn *conns = calloc(BMAX, sizeof *conns);
    struct pollfd *pf = calloc(BMAX + 2, sizeof *pf);
    int n = 0;
    bool listening = b->listen_delay_ms == 0;
    int64_t listen_at = mono_ms() + b->listen_delay_ms;
    for (;;) {
        pf[0] = (struct pollfd){.fd = b->efd, .events = POLLIN};
        pf[1] = (struct pollfd){.fd = listening ? b->lfd : -1, .events = POLLIN};
        for (int i = 0; i < n; i++) {
            bconn *c = &conns[i];
            short ev = c->off < c->len || c->reply_left ? POLLOUT : 0;
            if (!c->eof && c->len - c->off < (1 << 20))
                ev |= POLLIN;
            pf[2 + i] = (struct pollfd){.fd = c->fd, .events = ev};
        }
        int timeout = listening ? -1 : (int)(listen_at - mono_ms());
        poll(pf, (nfds_t)n + 2, timeout < 0 && !listening ? 0 : timeout);
        if (pf[0].revents)
            break;
        if (!listening && mono_ms() >= listen_at) {
            listen(b->lfd, 1024);
            listening = true;
        }
        int before = n;
        for (int i = 0; i < before; i++)
            if (pf[2 + i].revents && !bconn_io(b, &conns[i], pf[2 + i].revents)) {
                close(conns[i].fd);
                free(conns[i].out);
                conns[i] = (bconn){.fd = -1};
            }
        if (pf[1].revents & POLLIN) {
            int fd;
            while (n < BMAX &&
                   (fd = accept4(b->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
                atomic_fetch_add(&b->accepted, 1);
                conns[n] = (bconn){.fd = fd};
                if (b->tag)
                    out_append(&conns[n], &b->tag, 1);
                n++;
            }
        }
        int k = 0;
        for (int i = 0; i < n; i++)
            if (conns[i].fd >= 0)
                conns[k++] = conns[i];
        n = k;
    }
    for (int i = 0; i < n; i++) {
        close(conns[i].fd);
        free(conns[i].out);
    }
    free(conns);
    free(pf);
    return NULL;
}

static backend *backend_new_sized(int mode, char tag, int listen_delay_ms, size_t reply_size)
{
    backend *b = calloc(1, sizeof *b);
    assert_non_null(b);
    b->mode = mode;
    b->tag = tag;
    b->reply_size = reply_size;
    b->listen_delay_ms = listen_delay_ms;
    b->lfd = bound_socket();
    fcntl(b->lfd, F_SETFL, O_NONBLOCK);
    b->port = port_of(b->lfd);
    if (listen_delay_ms == 0)
        assert_int_equal(listen(b->lfd, 1024), 0);
    b->efd = eventfd(0, EFD_CLOEXEC);
    assert_true(b->efd >= 0);
    assert_int_equal(pthread_create(&b->th, NULL, backend_main, b), 0);
    return b;
}

static backend *backend_new(int mode, char tag, int listen_delay_ms)
{
    return backend_new_sized(mode, tag, listen_delay_ms, 1 << 20);
}

static void backend_free(backend *b)
{
    uint64_t one = 1;
    assert_int_equal(write(b->efd, &one, sizeof one), (ssize_t)sizeof one);
    pthread_join(b->th, NULL);
    close(b->efd);
    close(b->lfd);
    free(b);
}

/* A listener whose accept queue is full: SYNs are dropped, so connects to it hang. */
typedef struct stalled {
    int lfd, filler, port;
} stalled;

static stalled stalled_new(void)
{
    stalled s = {.lfd = bound_socket()};
    s.port = port_of(s.lfd);
    assert_int_equal(listen(s.lfd, 0), 0);
    s.filler = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = lo(s.port);
    assert_int_equal(connect(s.filler, (struct sockaddr *)&sa, sizeof sa), 0);
    return s;
}

static void stalled_free(stalled *s)
{
    close(s->filler);
    close(s->lfd);
}

/* ---- clients: one poll(2) thread running n sessions at once; each connects to the proxy,
 * sends its payload, optionally shuts down its sending side, and reads until EOF or error ---- */

typedef struct session {
    int fd;
    unsigned char *tx;
    size_t txlen, sent;
    bool shut;
    unsigned char *rx;
    size_t rxlen, rxcap;
    int err;
    bool done;
} session;

typedef struct clients {
    int port, n;
    session *s;
    pthread_t th;
    atomic_bool finished;
} clients;

static void *clients_main(void *arg)
{
    clients *r = arg;
    struct pollfd *pf = calloc((size_t)r->n, sizeof *pf);
    int *idx = calloc((size_t)r->n, sizeof *idx);
    int64_t end = mono_ms() + 15000;
    for (;;) {
        int m = 0;
        for (int i = 0; i < r->n; i++) {
            session *s = &r->s[i];
            if (s->done)
                continue;
            short ev = POLLIN;
            if (s->sent < s->txlen || !s->shut)
                ev |= POLLOUT;
            pf[m] = (struct pollfd){.fd = s->fd, .events = ev};
            idx[m++] = i;
        }
        if (m == 0 || mono_ms() > end)
            break;
        poll(pf, (nfds_t)m, 100);
        for (int j = 0; j < m; j++) {
            session *s = &r->s[idx[j]];
            short rev = pf[j].revents;
            if ((rev & POLLOUT) && s->sent < s->txlen) {
                ssize_t w = send(s->fd, s->tx + s->sent, s->txlen - s->sent, MSG_NOSIGNAL);
                if (w > 0)
                    s->sent += (size_t)w;
            }
            if ((rev & POLLOUT) && s->sent == s->txlen && !s->shut) {
                shutdown(s->fd, SHUT_WR);
                s->shut = true;
            }
            if (rev & (POLLIN | POLLHUP | POLLERR)) {
                if (s->rxcap - s->rxlen < 65536) {
                    s->rxcap = s->rxcap * 2 + 65536;
                    s->rx = realloc(s->rx, s->rxcap);
                }
                ssize_t got = recv(s->fd, s->rx + s->rxlen, s->rxcap - s->rxlen, 0);
                if (got > 0) {
                    s->rxlen += (size_t)got;
                } else if (got == 0) {
                    s->done = true;
                } else if (errno != EAGAIN) {
                    s->err = errno;
                    s->done = true;
                }
            }
        }
    }
    for (int i = 0; i < r->n; i++)
        close(r->s[i].fd);
    free(pf);
    free(idx);
    atomic_store(&r->finished, true);
    return NULL;
}

static clients *clients_start(int port, int n, size_t txlen)
{
    clients *r = calloc(1, sizeof *r);
    r->port = port;
    r->n = n;
    r->s = calloc((size_t)n, sizeof *r->s);
    for (int i = 0; i < n; i++) {
        session *s = &r->s[i];
        s->txlen = txlen;
        s->tx = malloc(txlen + 1);
        uint32_t x = 2463534242u + (uint32_t)i * 7919u;
        for (size_t k = 0; k < txlen; k++) {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            s->tx[k] = (unsigned char)x;
        }
        s->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        assert_true(s->fd >= 0);
        struct sockaddr_in sa = lo(port);
        int rc = connect(s->fd, (struct sockaddr *)&sa, sizeof sa);
        assert_true(rc == 0 || errno == EINPROGRESS);
    }
    assert_int_equal(pthread_create(&r->th, NULL, clients_main, r), 0);
    return r;
}

static bool clients_done(clients *r)
{
    return atomic_load(&r->finished);
}

static void clients_free(clients *r)
{
    pthread_join(r->th, NULL);
    for (int i = 0; i < r->n; i++) {
        free(r->s[i].tx);
        free(r->s[i].rx);
    }
    free(r->s);
    free(r);
}

static void assert_echoed(const session *s)
{
    assert_int_equal(s->err, 0);
    assert_true(s->done);
    assert_int_equal(s->rxlen, s->txlen);
    assert_memory_equal(s->rx, s->tx, s->txlen);
}

/* ---- simple clients driven from the test thread ---- */

static int cconnect_rcvbuf(int port, int rcvbuf)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    if (rcvbuf)
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
    struct sockaddr_in sa = lo(port);
    /* Completes from the listen backlog: the proxy's loop need not run. */
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    return fd;
}

static int cconnect(int port)
{
    return cconnect_rcvbuf(port, 0);
}

/* Read exactly n bytes while running the loop. */
static bool read_n(int fd, char *buf, size_t n, int ms)
{
    size_t have = 0;
    int64_t end = mono_ms() + ms;
    while (have < n && mono_ms() < end) {
        ssize_t r = recv(fd, buf + have, n - have, MSG_DONTWAIT);
        if (r > 0)
            have += (size_t)r;
        else if (r == 0 || errno != EAGAIN)
            return false;
        else
            turn();
    }
    return have == n;
}

/* Wait for the peer to end the connection: 0 for EOF, an errno for a reset, -1 on timeout or
 * unexpected data. */
static int wait_closed(int fd, int ms)
{
    int64_t end = mono_ms() + ms;
    while (mono_ms() < end) {
        char c;
        ssize_t r = recv(fd, &c, 1, MSG_DONTWAIT);
        if (r == 0)
            return 0;
        if (r > 0)
            return -1;
        if (errno != EAGAIN)
            return errno;
        turn();
    }
    return -1;
}

static void say(int fd, const char *msg)
{
    assert_int_equal(send(fd, msg, strlen(msg), MSG_NOSIGNAL), (ssize_t)strlen(msg));
}

/* ---- tests ---- */

static void test_echo_1mib(void **state)
{
    (void)state;
    backend *b = backend_new(B_ECHO, 0, 0);
    int port;
    us_proxy *p = proxy_up(2000, 100, 0, &port);
    set_target(p, b->port, 1);
    clients *r = clients_start(port, 1, 1 << 20);
    assert_true(WAIT_FOR(clients_done(r), 10000));
    assert_echoed(&r->s[0]);
    assert_true(WAIT_FOR(stats(p).open == 0, 2000));
    us_proxy_stats st = stats(p);
    assert_int_equal(st.accepted, 1);
    assert_int_equal(st.forwarded, 1);
    assert_int_equal(st.failed, 0);
    clients_free(r);
    us_proxy_stop(p);
    backend_free(b);
}

static void test_held_then_served(void **state)
{
    (void)state;
    backend *b = backend_new(B_ECHO, 0, 0);
    int port;
    us_proxy *p = proxy_up(3000, 100, 0, &port);
    clients *r = clients_start(port, 1, 1000);
    assert_true(WAIT_FOR(stats(p).held == 1, 2000));
    spin(200);
    assert_int_equal(stats(p).held, 1);
    assert_false(clients_done(r));
    set_target(p, b->port, 1);
    assert_true(WAIT_FOR(clients_done(r), 3000));
    assert_echoed(&r->s[0]);
    us_proxy_stats st = stats(p);
    assert_int_equal(st.forwarded, 1);
    assert_int_equal(st.failed, 0);
    assert_int_equal(st.held, 0);
    clients_free(r);
    us_proxy_stop(p);
    backend_free(b);
}

static void test_held_expires(void **state)
{
    (void)state;
    int port;
    us_proxy *p = proxy_up(300, 100, 0, &port);
    int64_t t0 = mono_ms();
    clients *r = clients_start(port, 1, 10);
    assert_true(WAIT_FOR(clients_done(r), 3000));
    int64_t took = mono_ms() - t0;
    assert_true(took >= 250);
    assert_true(took < 2000);
    assert_int_equal(r->s[0].rxlen, 0);
    us_proxy_stats st = stats(p);
    assert_int_equal(st.failed, 1);
    assert_int_equal(st.forwarded, 0);
    assert_int_equal(st.held, 0);
    clients_free(r);
    us_proxy_stop(p);
}

static void test_retry_until_backend_listens(void **state)
{
    (void)state;
    backend *b = backend_new(B_ECHO, 0, 200); /* bound: connects are refused for 200 ms */
    int port;
    us_proxy *p = proxy_up(3000, 100, 0, &port);
    set_target(p, b->port, 1);
    int64_t t0 = mono_ms();
    clients *r = clients_start(port, 1, 1000);
    assert_true(WAIT_FOR(clients_done(r), 3000));
    assert_echoed(&r->s[0]);
    assert_true(mono_ms() - t0 >= 150);
    assert_int_equal(atomic_load(&b->accepted), 1);
    assert_int_equal(stats(p).failed, 0);
    clients_free(r);
    us_proxy_stop(p);
    backend_free(b);
}

/* A target that refuses is probed by one connection at a time, not by every held one on its own
 * timer (issue 11: two thousand held connections retrying every 20 ms starve the event loop); the
 * first that gets through releases the others. */
static void test_refusing_target_probed_one_at_a_time(void **state)
{
    (void)state;
    backend *b = backend_new(B_ECHO, 0, 400); /* bound: connects are refused for 400 ms */
    int port;
    us_proxy *p = proxy_up(5000, 200, 0, &port);
    set_target(p, b->port, 1);
    clients *r = clients_start(port, 40, 3000);
    assert_true(WAIT_FOR(stats(p).accepted == 40, 2000));
    /* The first refusals come back: the connections are held, not each retrying on its own. */
    assert_true(WAIT_FOR(stats(p).held >= 39, 300));
    int64_t t0 = mono_ms();
    int most = 0;
    while (mono_ms() - t0 < 150) { /* still inside the refusal */
        us_proxy_stats st = stats(p);
        most = st.connecting > most ? st.connecting : most;
        spin(5);
    }
    assert_true(most <= 1);
    assert_true(stats(p).held >= 39);
    assert_true(WAIT_FOR(clients_done(r), 4000));
    for (int i = 0; i < 40; i++)
        assert_echoed(&r->s[i]);
    assert_int_equal(atomic_load(&b->accepted), 40);
    assert_int_equal(stats(p).failed, 0);
    clients_free(r);
    us_proxy_stop(p);
    backend_free(b);
}

static void test_target_switch_while_connecting(void **state)
{
    (void)state;
    stalled s = stalled_new();
    backend *b = backend_new(B_ECHO, 0, 0);
    int port;
    us_proxy *p = proxy_up(5000, 100, 5000, &port);
    set_target(p, s.port, 1);
    clients *r = clients_start(port, 1, 1000);
    assert_true(WAIT_FOR(stats(p).connecting == 1, 2000));
    spin(300);
    assert_int_equal(stats(p).connecting, 1); /* the attempt hangs */

    /* No target: the attempt is abandoned and the connection held. */
    us_proxy_set_target(p, NULL, 1);
    assert_int_equal(stats(p).connecting, 0);
    assert_int_equal(stats(p).held, 1);

    /* Back to the stalled one, then straight on to a working one: moved at once, long before
     * the 5 s connect timeout. */
    set_target(p, s.port, 1);
    assert_int_equal(stats(p).connecting, 1);
    int64_t t0 = mono_ms();
    set_target(p, b->port, 2);
    assert_true(WAIT_FOR(clients_done(r), 3000));
    assert_true(mono_ms() - t0 < 1000);
    assert_echoed(&r->s[0]);
    us_proxy_stats st = stats(p);
    assert_int_equal(st.forwarded, 1);
    assert_int_equal(st.failed, 0);
    clients_free(r);
    us_proxy_stop(p);
    backend_free(b);
    stalled_free(&s);
}

static void test_open_conns_per_epoch(void **state)
{
    (void)state;
    backend *a = backend_new(B_ECHO, 'A', 0);
    backend *b = backend_new(B_ECHO, 'B', 0);
    int port;
    us_proxy *p = proxy_up(2000, 100, 0, &port);
    set_target(p, a->port, 1);
    int c1 = cconnect(port), c2 = cconnect(port);
    char buf[8];
    assert_true(read_n(c1, buf, 1, 2000) && buf[0] == 'A');
    assert_true(read_n(c2, buf, 1, 2000) && buf[0] == 'A');
    assert_int_equal(us_proxy_open_conns(p, 1), 2);

    set_target(p, b->port, 2);
    int c3 = cconnect(port);
    assert_true(read_n(c3, buf, 1, 2000) && buf[0] == 'B');
    assert_int_equal(us_proxy_open_conns(p, 1), 2);
    assert_int_equal(us_proxy_open_conns(p, 2), 1);
    assert_int_equal(us_proxy_open_conns(p, 3), 0);

    /* Established connections keep their backend. */
    say(c1, "ping");
    assert_true(read_n(c1, buf, 4, 2000));
    assert_memory_equal(buf, "ping", 4);
    assert_int_equal(atomic_load(&a->accepted), 2);
    assert_int_equal(atomic_load(&b->accepted), 1);

    /* They are counted until they end (both ways of ending). */
    shutdown(c1, SHUT_WR);
    assert_int_equal(wait_closed(c1, 2000), 0);
    assert_true(WAIT_FOR(us_proxy_open_conns(p, 1) == 1, 2000));
    close(c2);
    assert_true(WAIT_FOR(us_proxy_open_conns(p, 1) == 0, 2000));
    assert_int_equal(us_proxy_open_conns(p, 2), 1);
    close(c3);
    assert_true(WAIT_FOR(stats(p).open == 0, 2000));
    close(c1);
    us_proxy_stop(p);
    backend_free(a);
    backend_free(b);
}

static void test_half_close(void **state)
{
    (void)state;
    backend *b = backend_new(B_REPLY, 0, 0); /* answers 1 MiB only after the request's EOF */
    int port;
    us_proxy *p = proxy_up(2000, 100, 0, &port);
    set_target(p, b->port, 1);
    clients *r = clients_start(port, 1, 100);
    assert_true(WAIT_FOR(clients_done(r), 10000));
    session *s = &r->s[0];
    assert_int_equal(s->err, 0);
    assert_int_equal(s->rxlen, b->reply_size);
    size_t bad = 0;
    for (size_t k = 0; k < s->rxlen; k++)
        bad += s->rx[k] != reply_byte(k);
    assert_int_equal(bad, 0);
    assert_true(WAIT_FOR(stats(p).open == 0, 2000));
    clients_free(r);
    us_proxy_stop(p);
    backend_free(b);
}

static int64_t thread_cpu_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* A client that does not read: the proxy must wait for it without spinning, then deliver all. */
static void test_slow_reader_no_busy_loop(void **state)
{
    (void)state;
    /* More than the socket buffers on the way can absorb, even autotuned. */
    backend *b = backend_new_sized(B_REPLY, 0, 0, 16 << 20);
    int port;
    us_proxy *p = proxy_up(2000, 100, 0, &port);
    set_target(p, b->port, 1);
    int c = cconnect_rcvbuf(port, 4096); /* so that the proxy's pipe fills up */
    say(c, "GET");
    shutdown(c, SHUT_WR);
    assert_true(WAIT_FOR(stats(p).open == 1, 2000));
    spin(200); /* let every buffer on the way fill up */
    int64_t cpu0 = thread_cpu_ms();
    spin(400);
    int64_t cpu = thread_cpu_ms() - cpu0;
    assert_true(cpu < 100);
    int big = 1 << 20;
    setsockopt(c, SOL_SOCKET, SO_RCVBUF, &big, sizeof big);
    char *buf = malloc(b->reply_size);
    assert_true(read_n(c, buf, b->reply_size, 20000));
    size_t bad = 0;
    for (size_t k = 0; k < b->reply_size; k++)
        bad += (unsigned char)buf[k] != reply_byte(k);
    assert_int_equal(bad, 0);
    assert_int_equal(wait_closed(c, 2000), 0);
    free(buf);
    close(c);
    assert_true(WAIT_FOR(stats(p).open == 0, 2000));
    us_proxy_stop(p);
    backend_free(b);
}

static void test_connection_limit(void **state)
{
    (void)state;
    backend *b = backend_new(B_ECHO, 0, 0);
    int port;
    us_proxy *p = proxy_up(5000, 3, 0, &port);

    /* Capture the log to check the warning and its rate limit. */
    char logpath[] = "/tmp/test_proxy_log_XXXXXX";
    int logfd = mkstemp(logpath);
    assert_true(logfd >= 0);
    fflush(stderr);
    int saved = dup(2);
    dup2(logfd, 2);

    int c[3];
    for (int i = 0; i < 3; i++)
        c[i] = cconnect(port);
    bool held3 = WAIT_FOR(stats(p).held == 3, 2000);
    int x1 = cconnect(port);
    bool refused1 = WAIT_FOR(stats(p).refused_limit == 1, 2000);
    int closed1 = wait_closed(x1, 2000);
    int x2 = cconnect(port);
    bool refused2 = WAIT_FOR(stats(p).refused_limit == 2, 2000);
    int closed2 = wait_closed(x2, 2000);

    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    char text[4096] = "";
    ssize_t n = pread(logfd, text, sizeof text - 1, 0);
    close(logfd);
    unlink(logpath);
    text[n > 0 ? n : 0] = '\0';
    fputs(text, stderr);

    assert_true(held3);
    assert_true(refused1 && refused2);
    assert_true(closed1 == 0 || closed1 == ECONNRESET);
    assert_true(closed2 == 0 || closed2 == ECONNRESET);
    const char *want = "proxy web: connection limit 3 reached";
    const char *hit = strstr(text, want);
    assert_non_null(hit);
    assert_null(strstr(hit + strlen(want), "connection limit")); /* once per 5 s */
    assert_int_equal(stats(p).held, 3);

    /* The held ones are served once there is a target, and then there is room again. */
    set_target(p, b->port, 1);
    char buf[4];
    for (int i = 0; i < 3; i++) {
        say(c[i], "abc");
        assert_true(read_n(c[i], buf, 3, 2000));
        assert_memory_equal(buf, "abc", 3);
        close(c[i]);
    }
    assert_true(WAIT_FOR(stats(p).open == 0, 2000));
    int y = cconnect(port);
    say(y, "xyz");
    assert_true(read_n(y, buf, 3, 2000));
    assert_memory_equal(buf, "xyz", 3);
    close(y);
    close(x1);
    close(x2);
    us_proxy_stats st = stats(p);
    assert_int_equal(st.refused_limit, 2);
    assert_int_equal(st.accepted, 4);
    us_proxy_stop(p);
    backend_free(b);
}

/* A client connection from another loopback address than 127.0.0.1. */
static int cconnect_from(int port, const char *src)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    struct sockaddr_in me = {.sin_family = AF_INET};
    assert_int_equal(inet_pton(AF_INET, src, &me.sin_addr), 1);
    assert_int_equal(bind(fd, (struct sockaddr *)&me, sizeof me), 0);
    struct sockaddr_in sa = lo(port);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    return fd;
}

/* One client address cannot take every slot: once the proxy is half full (5 of 10), its next
 * connection is refused while another address's are admitted up to the per-source limit; below
 * half full one busy client may hold more (a switchover's hold must not fail its requests); and a
 * slot freed is a slot again. */
static void test_per_source_limit(void **state)
{
    (void)state;
    int port;
    us_proxy *p = proxy_up_opts(
        (us_proxy_opts){.name = "web", .hold_ms = 5000, .max_conns = 10, .max_per_source = 2},
        &port);
    int a[6];
    for (int i = 0; i < 5; i++) {
        a[i] = cconnect(port);
        assert_true(WAIT_FOR(stats(p).held == i + 1, 2000)); /* beyond 2: not yet half full */
    }
    a[5] = cconnect(port);
    assert_true(WAIT_FOR(stats(p).refused_source == 1, 2000));
    int closed = wait_closed(a[5], 2000);
    assert_true(closed == 0 || closed == ECONNRESET);
    int b1 = cconnect_from(port, "127.0.0.2"), b2 = cconnect_from(port, "127.0.0.2");
    assert_true(WAIT_FOR(stats(p).held == 7, 2000));
    int b3 = cconnect_from(port, "127.0.0.2");
    assert_true(WAIT_FOR(stats(p).refused_source == 2, 2000));
    close(b3);
    close(a[0]);
    backend *b = backend_new(B_ECHO, 0, 0);
    set_target(p, b->port, 1);
    assert_true(WAIT_FOR(stats(p).open == 6, 2000)); /* a[0] is gone, the others forward */
    close(a[1]);
    close(a[2]);
    assert_true(WAIT_FOR(stats(p).open == 4, 2000)); /* 4 of 10: below half full again */
    int a6 = cconnect(port);
    char buf[4];
    say(a6, "abc");
    assert_true(read_n(a6, buf, 3, 2000));
    assert_memory_equal(buf, "abc", 3);
    us_proxy_stats st = stats(p);
    assert_int_equal(st.refused_source, 2);
    assert_int_equal(st.refused_limit, 0);
    for (int i = 3; i < 6; i++)
        close(a[i]);
    close(a6);
    close(b1);
    close(b2);
    us_proxy_stop(p);
    backend_free(b);
}

/* A connection that moves nothing for idle_ms is closed; one that keeps talking is not. */
static void test_idle_timeout(void **state)
{
    (void)state;
    backend *b = backend_new(B_ECHO, 0, 0);
    int port;
    us_proxy *p = proxy_up_opts(
        (us_proxy_opts){.name = "web", .hold_ms = 5000, .max_conns = 10, .idle_ms = 300}, &port);
    set_target(p, b->port, 1);
    int quiet = cconnect(port), chatty = cconnect(port);
    char buf[4];
    say(quiet, "abc");
    assert_true(read_n(quiet, buf, 3, 2000));
    int64_t t0 = mono_ms();
    while (mono_ms() - t0 < 900) {
        say(chatty, "xyz");
        assert_true(read_n(chatty, buf, 3, 2000));
        assert_memory_equal(buf, "xyz", 3);
        WAIT_FOR(false, 100);
    }
    assert_int_equal(stats(p).idle_closed, 1);
    int closed = wait_closed(quiet, 2000);
    assert_true(closed == 0 || closed == ECONNRESET);
    assert_int_equal(stats(p).open, 1);
    close(quiet);
    close(chatty);
    us_proxy_stop(p);
    backend_free(b);
}

static void test_listen_errors(void **state)
{
    (void)state;
    int port;
    us_proxy *p = proxy_up(1000, 10, 0, &port);
    char addr[32], err[256] = "";
    snprintf(addr, sizeof addr, "127.0.0.1:%d", port);
    us_proxy_opts o = {.name = "web", .hold_ms = 1000, .max_conns = 10};
    us_proxy *q = (us_proxy *)&o;
    assert_int_equal(us_proxy_start(&loop, addr, &o, &q, err, sizeof err), -EADDRINUSE);
    assert_null(q);
    assert_non_null(strstr(err, "address already in use"));
    assert_non_null(strstr(err, addr));

    err[0] = '\0';
    assert_int_equal(us_proxy_start(&loop, "127.0.0.1", &o, &q, err, sizeof err), -EINVAL);
    assert_non_null(strstr(err, "bad listen address '127.0.0.1'"));
    assert_int_equal(us_proxy_start(&loop, "localhost:80", &o, &q, err, sizeof err), -EINVAL);
    assert_int_equal(us_proxy_start(&loop, "203.0.113.7:8000", &o, &q, err, sizeof err),
                     -EADDRNOTAVAIL);
    assert_non_null(strstr(err, "203.0.113.7:8000"));
    us_proxy_stop(p);
}

static void test_no_fd_leak(void **state)
{
    (void)state;
    int before = count_fds();
    backend *b = backend_new(B_ECHO, 0, 0);
    stalled s = stalled_new();
    int port;
    us_proxy *p = proxy_up(400, 3, 5000, &port);

    /* A connection that fails after the hold time. */
    clients *r = clients_start(port, 1, 10);
    assert_true(WAIT_FOR(clients_done(r), 3000));
    clients_free(r);
    assert_int_equal(stats(p).failed, 1);

    /* Served ones (their pipes go to the pool), one still open at stop... */
    set_target(p, b->port, 1);
    r = clients_start(port, 3, 5000);
    assert_true(WAIT_FOR(clients_done(r), 5000));
    for (int i = 0; i < 3; i++)
        assert_echoed(&r->s[i]);
    clients_free(r);
    int c1 = cconnect(port);
    say(c1, "a");
    char buf[1];
    assert_true(read_n(c1, buf, 1, 2000));

    /* ...two still connecting at stop, and one refused at the limit. */
    set_target(p, s.port, 2);
    int c2 = cconnect(port), c3 = cconnect(port);
    assert_true(WAIT_FOR(stats(p).connecting == 2, 2000));
    int c4 = cconnect(port);
    assert_true(WAIT_FOR(stats(p).refused_limit == 1, 2000));
    assert_int_equal(stats(p).open, 1);

    us_proxy_stop(p);
    assert_true(wait_closed(c1, 2000) >= 0); /* reset by the stop */
    close(c1);
    close(c2);
    close(c3);
    close(c4);
    backend_free(b);
    stalled_free(&s);
    assert_int_equal(count_fds(), before);
}

static void test_200_concurrent(void **state)
{
    (void)state;
    backend *b = backend_new(B_ECHO, 0, 0);
    int port;
    us_proxy *p = proxy_up(3000, 4096, 0, &port);
    set_target(p, b->port, 1);
    clients *r = clients_start(port, 200, 2000);
    assert_true(WAIT_FOR(clients_done(r), 10000));
    for (int i = 0; i < 200; i++)
        assert_echoed(&r->s[i]);
    assert_true(WAIT_FOR(stats(p).open == 0, 3000));
    us_proxy_stats st = stats(p);
    assert_int_equal(st.accepted, 200);
    assert_int_equal(st.forwarded, 200);
    assert_int_equal(st.failed, 0);
    assert_int_equal(atomic_load(&b->accepted), 200);
    clients_free(r);
    us_proxy_stop(p);
    backend_free(b);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN); /* the agent ignores it too: splice(2) to a reset peer raises it */
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_echo_1mib, setup, teardown),
        cmocka_unit_test_setup_teardown(test_held_then_served, setup, teardown),
        cmocka_unit_test_setup_teardown(test_held_expires, setup, teardown),
        cmocka_unit_test_setup_teardown(test_retry_until_backend_listens, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refusing_target_probed_one_at_a_time, setup, teardown),
        cmocka_unit_test_setup_teardown(test_target_switch_while_connecting, setup, teardown),
        cmocka_unit_test_setup_teardown(test_open_conns_per_epoch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_half_close, setup, teardown),
        cmocka_unit_test_setup_teardown(test_slow_reader_no_busy_loop, setup, teardown),
        cmocka_unit_test_setup_teardown(test_connection_limit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_per_source_limit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_idle_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_listen_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_fd_leak, setup, teardown),
        cmocka_unit_test_setup_teardown(test_200_concurrent, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
