/* test_transport.c — the authenticated Raft transport and RPC channel on a real libuv loop over
 * 127.0.0.1 (ephemeral ports): streams handed to "libraft" carry bytes intact (multi-MB too),
 * wrong keys, garbage and half handshakes are refused and counted, RPC round trips, key rotation,
 * and closing cancels what is pending. Every wait is bounded. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "lib/key.h"
#include "net/transport.h"
#include "helpers.h"

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

#define WAIT_FOR(cond, ms)                                                                         \
    __extension__({                                                                                \
        int64_t end_ = mono_ms() + (ms);                                                           \
        while (!(cond) && mono_ms() < end_)                                                        \
            uv_run(&loop, UV_RUN_ONCE);                                                            \
        (bool)(cond);                                                                              \
    })

static void run_for(int ms)
{
    int64_t end = mono_ms() + ms;
    while (mono_ms() < end)
        uv_run(&loop, UV_RUN_ONCE);
}

/* ---- keys ---- */

static char key_old[65], key_new[65], key_other[65];

static void random_hex(char out[65])
{
    unsigned char k[32];
    randombytes_buf(k, sizeof k);
    sodium_bin2hex(out, 65, k, sizeof k);
}

static us_keyring ring(const char *k1, const char *k2)
{
    char text[200];
    snprintf(text, sizeof text, "%s\n%s\n", k1, k2 ? k2 : "");
    us_keyring r;
    char err[256];
    assert_int_equal(us_keyring_parse(text, strlen(text), "test", &r, err, sizeof err), 0);
    return r;
}

/* ---- a node: a transport and what "libraft" saw ---- */

typedef struct node {
    us_transport w; /* first: t->impl == &node->w == node */
    char addr[32];
    int accepts;
    raft_id last_id;
    char last_addr[64];
    uv_stream_t *in; /* the last accepted stream */
    unsigned char *rx;
    size_t rx_len, rx_cap;
    bool in_eof;
    bool closed;
} node;

static void in_alloc(uv_handle_t *h, size_t sug, uv_buf_t *buf)
{
    node *n = h->data;
    if (n->rx_cap - n->rx_len < sug) {
        n->rx_cap = n->rx_cap * 2 + sug;
        n->rx = realloc(n->rx, n->rx_cap);
    }
    *buf = uv_buf_init((char *)n->rx + n->rx_len, (unsigned)(n->rx_cap - n->rx_len));
}

static void in_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    node *n = s->data;
    (void)buf;
    if (nread > 0)
        n->rx_len += (size_t)nread;
    else if (nread < 0)
        n->in_eof = true;
}

static void stream_free(uv_handle_t *h)
{
    raft_free(h);
}

static void accept_cb(struct raft_uv_transport *t, raft_id id, const char *address,
                      uv_stream_t *stream)
{
    node *n = t->impl;
    n->accepts++;
    n->last_id = id;
    snprintf(n->last_addr, sizeof n->last_addr, "%s", address);
    if (n->in)
        uv_close((uv_handle_t *)n->in, stream_free);
    n->in = stream;
    n->in_eof = false;
    stream->data = n;
    uv_read_start(stream, in_alloc, in_read);
}

static void node_start_in(node *n, const us_keyring *keys, const char *cluster, const char *name,
                          raft_id id)
{
    memset(n, 0, sizeof *n);
    snprintf(n->addr, sizeof n->addr, "127.0.0.1:%d", ut_free_port());
    assert_int_equal(us_transport_init(&n->w, &loop, 1000, keys, cluster, name), 0);
    assert_int_equal(n->w.t.init(&n->w.t, id, n->addr), 0);
    assert_int_equal(n->w.t.listen(&n->w.t, accept_cb), 0);
}

static void node_start(node *n, const us_keyring *keys, const char *name, raft_id id)
{
    node_start_in(n, keys, "test", name, id);
}

static void closed_cb(struct raft_uv_transport *t)
{
    node *n = t->impl;
    n->closed = true;
}

static void node_stop(node *n)
{
    if (n->in) {
        uv_close((uv_handle_t *)n->in, stream_free);
        n->in = NULL;
    }
    n->w.t.close(&n->w.t, closed_cb);
    assert_true(WAIT_FOR(n->closed, 3000));
    us_transport_close(&n->w);
    free(n->rx);
}

/* ---- connecting like libraft ---- */

typedef struct conn_res {
    struct raft_uv_connect req;
    bool done;
    int status;
    uv_stream_t *stream;
} conn_res;

static void connect_cb(struct raft_uv_connect *req, uv_stream_t *stream, int status)
{
    conn_res *r = req->data;
    r->done = true;
    r->status = status;
    r->stream = stream;
}

static void do_connect(node *from, node *to, conn_res *r)
{
    memset(r, 0, sizeof *r);
    r->req.data = r;
    assert_int_equal(from->w.t.connect(&from->w.t, &r->req, 2, to->addr, connect_cb), 0);
    assert_true(WAIT_FOR(r->done, 3000));
}

static int writes_done;

static void write_cb(uv_write_t *req, int status)
{
    assert_int_equal(status, 0);
    writes_done++;
    free(req);
}

static void stream_write(uv_stream_t *s, const unsigned char *p, size_t n)
{
    uv_write_t *req = malloc(sizeof *req);
    uv_buf_t b = uv_buf_init((char *)p, (unsigned)n);
    assert_int_equal(uv_write(req, s, &b, 1, write_cb), 0);
}

static void setup_keys(void)
{
    static bool done;
    if (done)
        return;
    done = true;
    random_hex(key_old);
    random_hex(key_new);
    random_hex(key_other);
}

static int setup(void **state)
{
    (void)state;
    setup_keys();
    uv_loop_init(&loop);
    uv_timer_init(&loop, &tick);
    uv_timer_start(&tick, tick_cb, 2, 2);
    writes_done = 0;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    uv_close((uv_handle_t *)&tick, NULL);
    uv_run(&loop, UV_RUN_NOWAIT);
    run_for(20);
    assert_int_equal(uv_loop_close(&loop), 0); /* every handle was closed */
    return 0;
}

/* ---- tests ---- */

static void test_stream_intact(void **state)
{
    (void)state;
    us_keyring k = ring(key_old, NULL);
    node a, b;
    node_start(&a, &k, "alpha", 1);
    node_start(&b, &k, "beta", 2);
    conn_res r;
    do_connect(&a, &b, &r);
    assert_int_equal(r.status, 0);
    assert_non_null(r.stream);
    assert_true(WAIT_FOR(b.accepts == 1, 2000));
    assert_int_equal(b.last_id, 1);
    assert_string_equal(b.last_addr, a.addr);

    /* A small message, then 5 MB in one write, then another small one. */
    size_t big = 5u << 20;
    unsigned char *msg = malloc(big + 200);
    for (size_t i = 0; i < big + 200; i++)
        msg[i] = (unsigned char)(i * 7 + (i >> 13));
    stream_write(r.stream, msg, 100);
    stream_write(r.stream, msg + 100, big);
    stream_write(r.stream, msg + 100 + big, 100);
    assert_true(WAIT_FOR(b.rx_len == big + 200 && writes_done == 3, 20000));
    assert_memory_equal(b.rx, msg, big + 200);

    /* The other direction works too. */
    b.in->data = &b;
    a.rx_len = 0;
    r.stream->data = &a;
    uv_read_start(r.stream, in_alloc, in_read);
    stream_write(b.in, msg, 1000);
    assert_true(WAIT_FOR(a.rx_len == 1000, 3000));
    assert_memory_equal(a.rx, msg, 1000);

    /* Closing libraft's end closes the connection: the other side sees EOF. */
    uv_close((uv_handle_t *)r.stream, stream_free);
    assert_true(WAIT_FOR(b.in_eof, 3000));
    assert_int_equal(us_transport_stats_get(&b.w)->accepted, 1);
    assert_int_equal(us_transport_stats_get(&b.w)->rejected_auth, 0);
    free(msg);
    node_stop(&a);
    node_stop(&b);
}

static void test_wrong_key(void **state)
{
    (void)state;
    us_keyring k1 = ring(key_old, NULL), k2 = ring(key_other, NULL);
    node a, c;
    node_start(&a, &k1, "alpha", 1);
    node_start(&c, &k2, "intruder", 3);
    conn_res r;
    do_connect(&c, &a, &r);
    assert_int_not_equal(r.status, 0);
    do_connect(&a, &c, &r);
    assert_int_not_equal(r.status, 0);
    run_for(100);
    assert_int_equal(a.accepts, 0);
    assert_int_equal(c.accepts, 0);
    assert_int_equal(us_transport_stats_get(&a.w)->rejected_auth, 1);
    assert_int_equal(us_transport_stats_get(&c.w)->rejected_auth, 1);
    assert_int_equal(us_transport_stats_get(&a.w)->accepted, 0);
    node_stop(&a);
    node_stop(&c);
}

/* The cluster name is part of the transcript: same key, other cluster name, no connection. */
static void test_other_cluster_name(void **state)
{
    (void)state;
    us_keyring k = ring(key_old, NULL);
    node a, b;
    node_start(&a, &k, "alpha", 1);
    node_start_in(&b, &k, "prod", "beta", 2);
    conn_res r;
    do_connect(&b, &a, &r);
    assert_int_not_equal(r.status, 0);
    run_for(100);
    assert_int_equal(a.accepts, 0);
    assert_int_equal(us_transport_stats_get(&a.w)->accepted, 0);
    assert_int_equal(us_transport_stats_get(&a.w)->rejected_auth, 1);
    node_stop(&a);
    node_stop(&b);
}

/* A receiver that does not read: the sender's writes stall (bounded buffering in between), and
 * once it reads again everything arrives intact. */
static void test_backpressure(void **state)
{
    (void)state;
    us_keyring k = ring(key_old, NULL);
    node a, b;
    node_start(&a, &k, "alpha", 1);
    node_start(&b, &k, "beta", 2);
    conn_res r;
    do_connect(&a, &b, &r);
    assert_int_equal(r.status, 0);
    assert_true(WAIT_FOR(b.accepts == 1, 2000));
    uv_read_stop(b.in);
    size_t chunk = 1u << 20;
    int n = 48;
    unsigned char *msg = malloc(chunk * (size_t)n);
    for (size_t i = 0; i < chunk * (size_t)n; i++)
        msg[i] = (unsigned char)(i * 13 + (i >> 17));
    for (int i = 0; i < n; i++)
        stream_write(r.stream, msg + (size_t)i * chunk, chunk);
    run_for(1000);
    /* Kernel socket buffers plus at most a few MiB in the relays: most writes are still queued. */
    print_message("writes done while the receiver does not read: %d of %d\n", writes_done, n);
    assert_true(writes_done < n / 2);
    uv_read_start(b.in, in_alloc, in_read);
    assert_true(WAIT_FOR(b.rx_len == chunk * (size_t)n && writes_done == n, 30000));
    assert_memory_equal(b.rx, msg, chunk * (size_t)n);
    free(msg);
    uv_close((uv_handle_t *)r.stream, stream_free);
    node_stop(&a);
    node_stop(&b);
}

static int raw_connect(const char *addr)
{
    int port = atoi(strchr(addr, ':') + 1);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_port = htons((uint16_t)port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    fcntl(fd, F_SETFL, O_NONBLOCK);
    return fd;
}

/* Has the peer closed fd (EOF or reset)? Drains what it sent. */
static bool raw_closed(int fd)
{
    char buf[256];
    for (int i = 0; i < 16; i++) {
        ssize_t n = recv(fd, buf, sizeof buf, 0);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK))
            return true;
        if (n < 0)
            return false;
    }
    return false;
}

static void test_garbage_and_half_handshakes(void **state)
{
    (void)state;
    us_keyring k = ring(key_old, NULL);
    node a;
    node_start(&a, &k, "alpha", 1);

    /* Garbage: closed at once (bad magic). */
    int g = raw_connect(a.addr);
    char junk[100];
    randombytes_buf(junk, sizeof junk);
    memcpy(junk, "GET ", 4);
    assert_int_equal(send(g, junk, sizeof junk, MSG_NOSIGNAL), (ssize_t)sizeof junk);
    int64_t t0 = mono_ms();
    assert_true(WAIT_FOR(raw_closed(g), 1500));
    assert_true(mono_ms() - t0 < 500);
    close(g);

    /* A hello offering only a key id we do not have: refused at once. */
    unsigned char hello[46] = {'U', 'S', 'T', '1', 1, 1, 0xde, 0xad, 0xbe, 0xef};
    int u = raw_connect(a.addr);
    assert_int_equal(send(u, hello, sizeof hello, MSG_NOSIGNAL), (ssize_t)sizeof hello);
    assert_true(WAIT_FOR(raw_closed(u), 1500));
    close(u);

    /* Half handshakes: part of a hello, a hello with a known key id but no MAC, nothing. */
    int h1 = raw_connect(a.addr);
    assert_int_equal(send(h1, hello, 20, MSG_NOSIGNAL), 20);
    int h2 = raw_connect(a.addr);
    uint32_t id = k.id[0];
    hello[6] = (unsigned char)(id >> 24);
    hello[7] = (unsigned char)(id >> 16);
    hello[8] = (unsigned char)(id >> 8);
    hello[9] = (unsigned char)id;
    assert_int_equal(send(h2, hello, sizeof hello, MSG_NOSIGNAL), (ssize_t)sizeof hello);
    int h3 = raw_connect(a.addr);
    t0 = mono_ms();
    assert_true(WAIT_FOR(raw_closed(h1) && raw_closed(h2) && raw_closed(h3), 2000));
    int64_t took = mono_ms() - t0;
    assert_true(took >= 900 && took < 1500);
    close(h1);
    close(h2);
    close(h3);

    /* A wrong MAC after a valid hello. */
    int m = raw_connect(a.addr);
    assert_int_equal(send(m, hello, sizeof hello, MSG_NOSIGNAL), (ssize_t)sizeof hello);
    unsigned char reply[73];
    size_t got = 0;
    int64_t end = mono_ms() + 1000;
    while (got < sizeof reply && mono_ms() < end) {
        uv_run(&loop, UV_RUN_ONCE);
        ssize_t n = recv(m, reply + got, sizeof reply - got, 0);
        if (n > 0)
            got += (size_t)n;
    }
    assert_int_equal(got, sizeof reply);
    assert_memory_equal(reply, "UST1", 4);
    assert_int_equal(reply[4], 0);
    unsigned char bad_mac[32] = {0};
    assert_int_equal(send(m, bad_mac, sizeof bad_mac, MSG_NOSIGNAL), 32);
    assert_true(WAIT_FOR(raw_closed(m), 1500));
    close(m);

    run_for(50);
    const us_transport_stats *s = us_transport_stats_get(&a.w);
    assert_int_equal(a.accepts, 0);
    assert_int_equal(s->accepted, 0);
    assert_int_equal(s->rejected_malformed, 1);
    assert_int_equal(s->rejected_auth, 2);
    assert_int_equal(s->timeouts, 3);

    /* Still serving honest peers. */
    node b;
    node_start(&b, &k, "beta", 2);
    conn_res r;
    do_connect(&b, &a, &r);
    assert_int_equal(r.status, 0);
    assert_true(WAIT_FOR(a.accepts == 1, 2000));
    uv_close((uv_handle_t *)r.stream, stream_free);
    node_stop(&a);
    node_stop(&b);
}

static void test_handshake_limit(void **state)
{
    (void)state;
    us_keyring k = ring(key_old, NULL);
    node a;
    node_start(&a, &k, "alpha", 1);
    int fds[US_TRANSPORT_MAX_HANDSHAKES + 10];
    int n = (int)(sizeof fds / sizeof fds[0]);
    for (int i = 0; i < n; i++)
        fds[i] = raw_connect(a.addr);
    assert_true(WAIT_FOR(us_transport_stats_get(&a.w)->overflow == 10, 2000));
    /* The slots free up when the handshakes time out; then an honest peer gets in. */
    assert_true(
        WAIT_FOR(us_transport_stats_get(&a.w)->timeouts == US_TRANSPORT_MAX_HANDSHAKES, 2000));
    for (int i = 0; i < n; i++) {
        assert_true(WAIT_FOR(raw_closed(fds[i]), 500));
        close(fds[i]);
    }
    node b;
    node_start(&b, &k, "beta", 2);
    conn_res r;
    do_connect(&b, &a, &r);
    assert_int_equal(r.status, 0);
    uv_close((uv_handle_t *)r.stream, stream_free);
    node_stop(&a);
    node_stop(&b);
}

/* ---- RPC ---- */

typedef struct rpc_res {
    bool done;
    int calls;
    int status;
    char *body;
    size_t len;
} rpc_res;

static void reply_cb(void *data, int status, const char *body, size_t len)
{
    rpc_res *r = data;
    r->done = true;
    r->calls++;
    r->status = status;
    free(r->body);
    r->body = NULL;
    r->len = len;
    if (body) {
        r->body = malloc(len + 1);
        memcpy(r->body, body, len);
        r->body[len] = 0;
    }
}

static void rpc_reset(rpc_res *r)
{
    free(r->body);
    memset(r, 0, sizeof *r);
}

static us_rpc_ctx *deferred;

/* "echo X" answers "NAME: X"; "big N" answers N bytes; "later" is answered by the test. */
static void handler(void *data, us_rpc_ctx *ctx, const char *peer, const char *body, size_t len)
{
    (void)data;
    if (len >= 5 && memcmp(body, "later", 5) == 0) {
        deferred = ctx;
        return;
    }
    if (len >= 4 && memcmp(body, "big ", 4) == 0) {
        size_t n = (size_t)atol(body + 4);
        char *out = malloc(n);
        for (size_t i = 0; i < n; i++)
            out[i] = (char)('a' + i % 26);
        us_rpc_respond(ctx, out, n);
        free(out);
        return;
    }
    char out[300];
    int n = snprintf(out, sizeof out, "%s: %.*s", peer, (int)(len < 200 ? len : 200), body);
    us_rpc_respond(ctx, out, (size_t)n);
}

static void test_rpc(void **state)
{
    (void)state;
    us_keyring k = ring(key_old, NULL);
    node a, b;
    node_start(&a, &k, "alpha", 1);
    node_start(&b, &k, "beta", 2);
    us_transport_set_rpc_handler(&b.w, handler, NULL);

    rpc_res r = {0};
    assert_int_equal(us_transport_rpc(&a.w, b.addr, "echo hi", 7, 2000, reply_cb, &r), 0);
    assert_true(WAIT_FOR(r.done, 3000));
    assert_int_equal(r.status, 0);
    assert_string_equal(r.body, "alpha: echo hi");

    /* A 2 MiB request and a 2 MiB response. */
    char *req = malloc(US_TRANSPORT_RPC_MAX);
    memset(req, 'x', US_TRANSPORT_RPC_MAX);
    char head[32];
    int hn = snprintf(head, sizeof head, "big %u", US_TRANSPORT_RPC_MAX);
    memcpy(req, head, (size_t)hn + 1);
    rpc_reset(&r);
    assert_int_equal(us_transport_rpc(&a.w, b.addr, req, US_TRANSPORT_RPC_MAX, 5000, reply_cb, &r),
                     0);
    assert_true(WAIT_FOR(r.done, 6000));
    assert_int_equal(r.status, 0);
    assert_int_equal(r.len, US_TRANSPORT_RPC_MAX);
    assert_int_equal(r.body[US_TRANSPORT_RPC_MAX - 1], 'a' + (US_TRANSPORT_RPC_MAX - 1) % 26);
    assert_int_equal(
        us_transport_rpc(&a.w, b.addr, req, US_TRANSPORT_RPC_MAX + 1, 5000, reply_cb, &r),
        -EMSGSIZE);
    free(req);

    /* An answer given later, from another callback. */
    rpc_reset(&r);
    deferred = NULL;
    assert_int_equal(us_transport_rpc(&a.w, b.addr, "later", 5, 3000, reply_cb, &r), 0);
    assert_true(WAIT_FOR(deferred != NULL, 2000));
    run_for(50);
    assert_false(r.done);
    us_rpc_respond(deferred, "ok", 2);
    assert_true(WAIT_FOR(r.done, 2000));
    assert_int_equal(r.status, 0);
    assert_string_equal(r.body, "ok");

    /* Nobody answers in time: -ETIMEDOUT; the late answer is dropped. */
    rpc_reset(&r);
    deferred = NULL;
    assert_int_equal(us_transport_rpc(&a.w, b.addr, "later", 5, 300, reply_cb, &r), 0);
    assert_true(WAIT_FOR(r.done, 2000));
    assert_int_equal(r.status, -ETIMEDOUT);
    assert_non_null(deferred);
    run_for(50);
    us_rpc_respond(deferred, "too late", 8);
    run_for(50);
    assert_int_equal(r.calls, 1);

    /* Nobody listening: refused. */
    rpc_reset(&r);
    char nowhere[32];
    snprintf(nowhere, sizeof nowhere, "127.0.0.1:%d", ut_free_port());
    assert_int_equal(us_transport_rpc(&a.w, nowhere, "x", 1, 2000, reply_cb, &r), 0);
    assert_true(WAIT_FOR(r.done, 3000));
    assert_int_equal(r.status, -ECONNREFUSED);

    /* Pending when the transport closes: -ECANCELED, exactly once. */
    rpc_reset(&r);
    deferred = NULL;
    assert_int_equal(us_transport_rpc(&a.w, b.addr, "later", 5, 3000, reply_cb, &r), 0);
    assert_true(WAIT_FOR(deferred != NULL, 2000));
    node_stop(&a);
    assert_true(r.done);
    assert_int_equal(r.status, -ECANCELED);
    assert_int_equal(us_transport_rpc(&a.w, b.addr, "x", 1, 100, reply_cb, &r), -ESHUTDOWN);
    node_stop(&b);
    us_rpc_respond(deferred, "gone", 4); /* after both closed: dropped, freed */
    assert_int_equal(r.calls, 1);
    free(r.body);
}

static void test_rpc_wrong_key(void **state)
{
    (void)state;
    us_keyring k1 = ring(key_old, NULL), k2 = ring(key_other, NULL);
    node a, c;
    node_start(&a, &k1, "alpha", 1);
    node_start(&c, &k2, "intruder", 3);
    us_transport_set_rpc_handler(&a.w, handler, NULL);
    us_transport_set_rpc_handler(&c.w, handler, NULL);
    rpc_res r = {0};
    assert_int_equal(us_transport_rpc(&c.w, a.addr, "echo hi", 7, 2000, reply_cb, &r), 0);
    assert_true(WAIT_FOR(r.done, 3000));
    assert_int_equal(r.status, -EACCES);
    rpc_reset(&r);
    assert_int_equal(us_transport_rpc(&a.w, c.addr, "echo hi", 7, 2000, reply_cb, &r), 0);
    assert_true(WAIT_FOR(r.done, 3000));
    assert_int_equal(r.status, -EACCES);
    assert_int_equal(us_transport_stats_get(&a.w)->rejected_auth, 1);
    node_stop(&a);
    node_stop(&c);
}

static void test_rotation(void **state)
{
    (void)state;
    us_keyring both = ring(key_new, key_old), old = ring(key_old, NULL),
               fresh = ring(key_new, NULL);
    node x, y, z;
    node_start(&x, &both, "x", 1);
    node_start(&y, &old, "y", 2);
    node_start(&z, &fresh, "z", 3);
    us_transport_set_rpc_handler(&x.w, handler, NULL);
    us_transport_set_rpc_handler(&y.w, handler, NULL);
    us_transport_set_rpc_handler(&z.w, handler, NULL);
    conn_res r;
    do_connect(&x, &y, &r);
    assert_int_equal(r.status, 0);
    uv_close((uv_handle_t *)r.stream, stream_free);
    do_connect(&y, &x, &r);
    assert_int_equal(r.status, 0);
    uv_close((uv_handle_t *)r.stream, stream_free);
    do_connect(&z, &x, &r);
    assert_int_equal(r.status, 0);
    uv_close((uv_handle_t *)r.stream, stream_free);
    do_connect(&y, &z, &r); /* no common key */
    assert_int_not_equal(r.status, 0);
    /* The keyring is read in place: y reloads its key file as [new, old] and now gets in. */
    old = ring(key_new, key_old);
    do_connect(&y, &z, &r);
    assert_int_equal(r.status, 0);
    uv_close((uv_handle_t *)r.stream, stream_free);
    rpc_res q = {0};
    assert_int_equal(us_transport_rpc(&x.w, y.addr, "echo a", 6, 2000, reply_cb, &q), 0);
    assert_true(WAIT_FOR(q.done, 3000));
    assert_int_equal(q.status, 0);
    assert_string_equal(q.body, "x: echo a");
    rpc_reset(&q);
    assert_int_equal(us_transport_rpc(&y.w, x.addr, "echo b", 6, 2000, reply_cb, &q), 0);
    assert_true(WAIT_FOR(q.done, 3000));
    assert_int_equal(q.status, 0);
    assert_string_equal(q.body, "y: echo b");
    free(q.body);
    node_stop(&x);
    node_stop(&y);
    node_stop(&z);
}

static void test_close_cancels_connect(void **state)
{
    (void)state;
    us_keyring k = ring(key_old, NULL);
    node a;
    node_start(&a, &k, "alpha", 1);
    /* A listener that never answers: the connect stays in its handshake. */
    int l = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(l, (struct sockaddr *)&sa, sizeof sa), 0);
    listen(l, 8);
    socklen_t sl = sizeof sa;
    getsockname(l, (struct sockaddr *)&sa, &sl);
    char silent[32];
    snprintf(silent, sizeof silent, "127.0.0.1:%d", ntohs(sa.sin_port));
    conn_res r = {0};
    r.req.data = &r;
    assert_int_equal(a.w.t.connect(&a.w.t, &r.req, 2, silent, connect_cb), 0);
    rpc_res q = {0};
    assert_int_equal(us_transport_rpc(&a.w, silent, "x", 1, 200, reply_cb, &q), 0);
    assert_true(WAIT_FOR(q.done, 2000));
    assert_int_equal(q.status, -ETIMEDOUT);
    run_for(100);
    assert_false(r.done);
    node_stop(&a);
    assert_true(r.done);
    assert_int_equal(r.status, RAFT_CANCELED);
    close(l);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    assert_int_equal(us_crypto_init(), 0);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_stream_intact, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wrong_key, setup, teardown),
        cmocka_unit_test_setup_teardown(test_other_cluster_name, setup, teardown),
        cmocka_unit_test_setup_teardown(test_backpressure, setup, teardown),
        cmocka_unit_test_setup_teardown(test_garbage_and_half_handshakes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_handshake_limit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rpc, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rpc_wrong_key, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rotation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_close_cancels_connect, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
