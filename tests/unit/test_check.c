/* test_check.c — health checks against real sockets (a small HTTP responder on the test's own
 * loop) and real process groups. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "node/check.h"
#include "core/lease.h"
#include "core/service.h"
#include "node/supervisor.h"
#include "lib/clock.h"
#include "helpers.h"

/* ---- a tiny HTTP responder on the test loop ---- */

typedef enum {
    SRV_STATUS,  /* answer "HTTP/1.0 <status>" once the request is complete */
    SRV_HANG,    /* accept and read, never answer */
    SRV_CLOSE,   /* close right after accept */
    SRV_GARBAGE, /* answer something that is not HTTP */
} srv_mode;

#define MAX_CLIENTS 64

typedef struct server server;

typedef struct client {
    server *s;
    uv_tcp_t h;
    uv_write_t w;
    char buf[2048];
    size_t len;
    char resp[128];
    bool closing;
} client;

struct server {
    bool up;
    uv_tcp_t listener;
    int port;
    srv_mode mode;
    int status;
    int accepted;
    int requests; /* complete requests received */
    char last_req[2048];
    client *clients[MAX_CLIENTS];
};

static void client_closed(uv_handle_t *h)
{
    client *cl = h->data;
    for (int i = 0; i < MAX_CLIENTS; i++)
        if (cl->s->clients[i] == cl)
            cl->s->clients[i] = NULL;
    free(cl);
}

static void client_close(client *cl)
{
    if (cl->closing)
        return;
    cl->closing = true;
    uv_close((uv_handle_t *)&cl->h, client_closed);
}

static void client_written(uv_write_t *w, int status)
{
    (void)status;
    client_close(w->data);
}

static void client_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    client *cl = h->data;
    *buf = uv_buf_init(cl->buf + cl->len, (unsigned)(sizeof cl->buf - 1 - cl->len));
}

static void client_read(uv_stream_t *st, ssize_t n, const uv_buf_t *buf)
{
    (void)buf;
    client *cl = st->data;
    if (n < 0) {
        client_close(cl);
        return;
    }
    cl->len += (size_t)n;
    cl->buf[cl->len] = '\0';
    if (!strstr(cl->buf, "\r\n\r\n"))
        return;
    server *s = cl->s;
    s->requests++;
    snprintf(s->last_req, sizeof s->last_req, "%s", cl->buf);
    uv_read_stop(st);
    if (s->mode == SRV_HANG)
        return;
    if (s->mode == SRV_GARBAGE)
        snprintf(cl->resp, sizeof cl->resp, "SSH-2.0-OpenSSH_9.2\r\n\r\n");
    else
        snprintf(cl->resp, sizeof cl->resp, "HTTP/1.0 %d Whatever\r\nContent-Length: 0\r\n\r\n",
                 s->status);
    uv_buf_t b = uv_buf_init(cl->resp, (unsigned)strlen(cl->resp));
    cl->w.data = cl;
    if (uv_write(&cl->w, st, &b, 1, client_written) != 0)
        client_close(cl);
}

static void on_connection(uv_stream_t *l, int status)
{
    server *s = l->data;
    if (status < 0)
        return;
    client *cl = calloc(1, sizeof *cl);
    assert_non_null(cl);
    cl->s = s;
    uv_tcp_init(l->loop, &cl->h);
    cl->h.data = cl;
    if (uv_accept(l, (uv_stream_t *)&cl->h) != 0) {
        client_close(cl);
        return;
    }
    s->accepted++;
    int i = 0;
    while (i < MAX_CLIENTS && s->clients[i])
        i++;
    if (i == MAX_CLIENTS) {
        client_close(cl);
        return;
    }
    s->clients[i] = cl;
    if (s->mode == SRV_CLOSE)
        client_close(cl);
    else
        uv_read_start((uv_stream_t *)&cl->h, client_alloc, client_read);
}

static void server_start(uv_loop_t *loop, server *s, srv_mode mode, int status)
{
    memset(s, 0, sizeof *s);
    s->mode = mode;
    s->status = status;
    struct sockaddr_in sa;
    uv_ip4_addr("127.0.0.1", 0, &sa);
    assert_int_equal(uv_tcp_init(loop, &s->listener), 0);
    s->listener.data = s;
    assert_int_equal(uv_tcp_bind(&s->listener, (const struct sockaddr *)&sa, 0), 0);
    assert_int_equal(uv_listen((uv_stream_t *)&s->listener, 64, on_connection), 0);
    struct sockaddr_in got;
    int len = sizeof got;
    assert_int_equal(uv_tcp_getsockname(&s->listener, (struct sockaddr *)&got, &len), 0);
    s->port = ntohs(got.sin_port);
    s->up = true;
}

static void server_stop(server *s)
{
    if (!s->up)
        return;
    s->up = false;
    uv_close((uv_handle_t *)&s->listener, NULL);
    for (int i = 0; i < MAX_CLIENTS; i++)
        if (s->clients[i])
            client_close(s->clients[i]);
}

/* A port nobody listens on: bound once by the kernel's choice, then released. */
static int closed_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    socklen_t len = sizeof sa;
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
    close(fd);
    return ntohs(sa.sin_port);
}

/* ---- fixture, loop helpers ---- */

typedef struct rec {
    us_checker *c; /* NULL once stopped */
    int calls;
    us_health seen[32];
    bool stop_in_cb;
} rec;

#define MAX_RECS 8

/* Records live in the fixture, so that teardown can stop what a failed test left running. */
typedef struct fixture {
    uv_loop_t loop;
    server srv;
    char dir[64];
    int n_recs;
    rec recs[MAX_RECS];
} fixture;

static rec *new_rec(fixture *f)
{
    assert_true(f->n_recs < MAX_RECS);
    return &f->recs[f->n_recs++];
}

static void stop(rec *r)
{
    us_checker_stop(r->c);
    r->c = NULL;
}

static void on_change(us_checker *c, void *data)
{
    rec *r = data;
    assert_ptr_equal(c, r->c);
    if (r->calls < 32)
        r->seen[r->calls] = us_checker_status(c)->health;
    r->calls++;
    if (r->stop_in_cb) {
        us_checker_stop(c);
        r->c = NULL;
    }
}

/* Close the server and run the loop until nothing is left on it (or 3 s). */
static bool drain(fixture *f)
{
    server_stop(&f->srv);
    int64_t deadline = us_now_ms() + 3000;
    while (uv_loop_alive(&f->loop) && us_now_ms() < deadline) {
        uv_run(&f->loop, UV_RUN_NOWAIT);
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
    return !uv_loop_alive(&f->loop);
}

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    if (!f)
        return -1;
    if (!ut_mkdtemp(f->dir, sizeof f->dir, "check") || uv_loop_init(&f->loop) != 0)
        return -1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    for (int i = 0; i < f->n_recs; i++)
        stop(&f->recs[i]);
    bool drained = drain(f);
    int rc = uv_loop_close(&f->loop);
    ut_rmtree(f->dir);
    free(f);
    return drained && rc == 0 ? 0 : -1;
}

/* ---- definitions ---- */

/* The defaults (rise 2, fall 3, status 200-299), probing fast and without grace. */
static void base_def(us_service_def *d)
{
    us_service_defaults(d);
    strcpy(d->name, "svc");
    d->check_interval_ms = 100;
    d->check_timeout_ms = 100;
    d->check_grace_ms = 0;
}

static void add_http(us_service_def *d, int port, const char *path)
{
    us_check_def *ck = &d->checks[d->n_checks++];
    ck->kind = US_CHECK_HTTP;
    strcpy(ck->host, "127.0.0.1");
    ck->port = port;
    strcpy(ck->path, path);
    snprintf(ck->text, sizeof ck->text, "http://127.0.0.1:%d%s", port, path);
}

static void add_tcp(us_service_def *d, int port)
{
    us_check_def *ck = &d->checks[d->n_checks++];
    ck->kind = US_CHECK_TCP;
    strcpy(ck->host, "127.0.0.1");
    ck->port = port;
    snprintf(ck->text, sizeof ck->text, "tcp://127.0.0.1:%d", port);
}

static void add_exec(us_service_def *d, const char *cmd)
{
    us_check_def *ck = &d->checks[d->n_checks++];
    ck->kind = US_CHECK_EXEC;
    int n = snprintf(ck->text, sizeof ck->text, "exec:%s", cmd);
    assert_true(n > 0 && (size_t)n < sizeof ck->text);
}

static us_checker *start(fixture *f, const us_service_def *d, rec *r)
{
    r->c = us_checker_start(&f->loop, d, NULL, NULL, NULL, NULL, on_change, r);
    assert_non_null(r->c);
    return r->c;
}

/* ---- predicates ---- */

typedef struct want_health {
    const rec *r;
    us_health h;
} want_health;

static bool health_is(const void *arg)
{
    const want_health *w = arg;
    return w->r->c && us_checker_status(w->r->c)->health == w->h;
}

static bool wait_health(fixture *f, const rec *r, us_health h, int ms)
{
    want_health w = {r, h};
    return ut_run_until(&f->loop, health_is, &w, ms);
}

typedef struct want_count {
    const rec *r;
    uint64_t n;
} want_count;

static bool failed_at_least(const void *arg)
{
    const want_count *w = arg;
    return us_checker_status(w->r->c)->failed >= w->n;
}

static bool probes_at_least(const void *arg)
{
    const want_count *w = arg;
    return us_checker_status(w->r->c)->probes >= w->n;
}

static bool calls_at_least(const void *arg)
{
    const want_count *w = arg;
    return (uint64_t)w->r->calls >= w->n;
}

static void assert_contains(const char *s, const char *sub)
{
    if (!strstr(s, sub))
        fail_msg("expected \"%s\" in \"%s\"", sub, s);
}

/* pgid written by a check's `echo $$ > FILE`, 0 while not (completely) there. */
static pid_t read_pgid(const char *path)
{
    FILE *fp = fopen(path, "r");
    if (!fp)
        return 0;
    int pg = 0;
    char nl = 0;
    if (fscanf(fp, "%d%c", &pg, &nl) != 2 || nl != '\n')
        pg = 0;
    fclose(fp);
    return pg;
}

/* After the supervisor reaped the leader (loop drained), reap the group's orphans (we are a
 * subreaper) and require that the group no longer exists at all. */
static void assert_group_gone(pid_t pgid)
{
    int64_t deadline = us_now_ms() + 3000;
    while (us_pgrp_alive(pgid) && us_now_ms() < deadline) {
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
    assert_false(us_pgrp_alive(pgid));
    while (waitpid(-pgid, NULL, WNOHANG) > 0)
        ;
    errno = 0;
    assert_int_equal(kill(-pgid, 0), -1);
    assert_int_equal(errno, ESRCH);
}

/* ---- tests ---- */

static void test_health_step(void **state)
{
    (void)state;
    struct {
        us_health cur;
        int ok, fail;
        bool pass;
        int rise, fall;
        us_health want;
        int want_ok, want_fail;
    } cases[] = {
        /* unknown: rise / fall edges */
        {US_HEALTH_UNKNOWN, 0, 0, true, 2, 3, US_HEALTH_UNKNOWN, 1, 0},
        {US_HEALTH_UNKNOWN, 1, 0, true, 2, 3, US_HEALTH_HEALTHY, 2, 0},
        {US_HEALTH_UNKNOWN, 0, 0, true, 1, 3, US_HEALTH_HEALTHY, 1, 0},
        {US_HEALTH_UNKNOWN, 0, 0, false, 2, 3, US_HEALTH_UNKNOWN, 0, 1},
        {US_HEALTH_UNKNOWN, 0, 1, false, 2, 3, US_HEALTH_UNKNOWN, 0, 2},
        {US_HEALTH_UNKNOWN, 0, 2, false, 2, 3, US_HEALTH_UNHEALTHY, 0, 3},
        {US_HEALTH_UNKNOWN, 0, 0, false, 2, 1, US_HEALTH_UNHEALTHY, 0, 1},
        /* a failure breaks a run of passes and the reverse */
        {US_HEALTH_UNKNOWN, 1, 0, false, 2, 3, US_HEALTH_UNKNOWN, 0, 1},
        {US_HEALTH_UNKNOWN, 0, 2, true, 2, 3, US_HEALTH_UNKNOWN, 1, 0},
        /* healthy stays healthy until fall failures in a row */
        {US_HEALTH_HEALTHY, 5, 0, true, 2, 3, US_HEALTH_HEALTHY, 6, 0},
        {US_HEALTH_HEALTHY, 5, 0, false, 2, 3, US_HEALTH_HEALTHY, 0, 1},
        {US_HEALTH_HEALTHY, 0, 1, false, 2, 3, US_HEALTH_HEALTHY, 0, 2},
        {US_HEALTH_HEALTHY, 0, 2, false, 2, 3, US_HEALTH_UNHEALTHY, 0, 3},
        /* unhealthy stays unhealthy until rise passes in a row */
        {US_HEALTH_UNHEALTHY, 0, 3, false, 2, 3, US_HEALTH_UNHEALTHY, 0, 4},
        {US_HEALTH_UNHEALTHY, 0, 3, true, 2, 3, US_HEALTH_UNHEALTHY, 1, 0},
        {US_HEALTH_UNHEALTHY, 1, 0, true, 2, 3, US_HEALTH_HEALTHY, 2, 0},
        {US_HEALTH_UNHEALTHY, 1, 0, false, 2, 3, US_HEALTH_UNHEALTHY, 0, 1},
        /* no overflow at the top */
        {US_HEALTH_HEALTHY, INT_MAX, 0, true, 2, 3, US_HEALTH_HEALTHY, INT_MAX, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int ok = cases[i].ok, fl = cases[i].fail;
        us_health h =
            us_health_step(cases[i].cur, &ok, &fl, cases[i].pass, cases[i].rise, cases[i].fall);
        if (h != cases[i].want || ok != cases[i].want_ok || fl != cases[i].want_fail)
            fail_msg("case %zu: got %s ok %d fail %d, want %s ok %d fail %d", i, us_health_name(h),
                     ok, fl, us_health_name(cases[i].want), cases[i].want_ok, cases[i].want_fail);
    }
    /* A whole sequence: unknown -> healthy -> unhealthy -> healthy. */
    us_health h = US_HEALTH_UNKNOWN;
    int ok = 0, fl = 0;
    bool seq[] = {true, true, false, false, false, true, true};
    us_health want[] = {US_HEALTH_UNKNOWN, US_HEALTH_HEALTHY,   US_HEALTH_HEALTHY,
                        US_HEALTH_HEALTHY, US_HEALTH_UNHEALTHY, US_HEALTH_UNHEALTHY,
                        US_HEALTH_HEALTHY};
    for (size_t i = 0; i < sizeof seq / sizeof seq[0]; i++) {
        h = us_health_step(h, &ok, &fl, seq[i], 2, 3);
        assert_int_equal(h, want[i]);
    }
}

static void test_no_checks(void **state)
{
    fixture *f = *state;
    us_service_def d;
    base_def(&d);
    assert_null(us_checker_start(&f->loop, &d, NULL, NULL, NULL, NULL, on_change, NULL));
}

static void test_http_rise_fall(void **state)
{
    fixture *f = *state;
    server_start(&f->loop, &f->srv, SRV_STATUS, 200);
    us_service_def d;
    base_def(&d);
    add_http(&d, f->srv.port, "/healthz?x=1");
    rec *r = new_rec(f);
    start(f, &d, r);
    const us_check_status *st = us_checker_status(r->c);
    assert_int_equal(st->health, US_HEALTH_UNKNOWN);
    assert_int_equal(st->last_latency_ms, -1);
    assert_string_equal(st->cause, "");

    assert_true(wait_health(f, r, US_HEALTH_HEALTHY, 3000));
    assert_int_equal(r->calls, 1);
    assert_int_equal(r->seen[0], US_HEALTH_HEALTHY);
    assert_true(st->ok_run >= 2);
    assert_int_equal(st->fail_run, 0);
    assert_true(st->probes >= 2);
    assert_int_equal(st->failed, 0);
    assert_true(st->last_latency_ms >= 0 && st->last_latency_ms <= 100);
    assert_string_equal(st->cause, "");
    char want[256];
    snprintf(want, sizeof want,
             "GET /healthz?x=1 HTTP/1.0\r\nHost: 127.0.0.1:%d\r\nUser-Agent: understudy-check\r\n"
             "Connection: close\r\n\r\n",
             f->srv.port);
    assert_string_equal(f->srv.last_req, want);

    f->srv.status = 503;
    assert_true(wait_health(f, r, US_HEALTH_UNHEALTHY, 3000));
    assert_int_equal(r->calls, 2);
    assert_int_equal(r->seen[1], US_HEALTH_UNHEALTHY);
    assert_int_equal(st->fail_run, 3);
    assert_int_equal(st->ok_run, 0);
    assert_true(st->failed >= 3);
    char cause[256];
    snprintf(cause, sizeof cause,
             "check http://127.0.0.1:%d/healthz?x=1 failed 3/3: HTTP status 503", f->srv.port);
    assert_string_equal(st->cause, cause);

    /* Back again: rise passes make it healthy; the last cause is kept. */
    f->srv.status = 204;
    assert_true(wait_health(f, r, US_HEALTH_HEALTHY, 3000));
    assert_int_equal(r->calls, 3);
    assert_int_equal(st->fail_run, 0);
    assert_contains(st->cause, "HTTP status 503");
    stop(r);
}

static void test_http_status_range(void **state)
{
    fixture *f = *state;
    server_start(&f->loop, &f->srv, SRV_STATUS, 302);
    us_service_def d;
    base_def(&d);
    d.rise = d.fall = 1;
    add_http(&d, f->srv.port, "/");
    us_service_def wide = d;
    wide.check_status_min = 200;
    wide.check_status_max = 399;
    rec *r1 = new_rec(f), *r2 = new_rec(f);
    start(f, &wide, r1);
    start(f, &d, r2);
    assert_true(wait_health(f, r1, US_HEALTH_HEALTHY, 3000));
    assert_true(wait_health(f, r2, US_HEALTH_UNHEALTHY, 3000));
    assert_contains(us_checker_status(r2->c)->cause, "failed 1/1: HTTP status 302");
    stop(r1);
    stop(r2);
}

static void test_http_bad_responses(void **state)
{
    fixture *f = *state;
    struct {
        srv_mode mode;
        const char *why;
    } cases[] = {
        {SRV_GARBAGE, ": malformed HTTP response"},
        {SRV_CLOSE, ": connection closed before the status line"},
    };
    for (size_t i = 0; i < 2; i++) {
        server_start(&f->loop, &f->srv, cases[i].mode, 200);
        us_service_def d;
        base_def(&d);
        d.fall = 1;
        add_http(&d, f->srv.port, "/");
        rec *r = new_rec(f);
        start(f, &d, r);
        assert_true(wait_health(f, r, US_HEALTH_UNHEALTHY, 3000));
        assert_contains(us_checker_status(r->c)->cause, cases[i].why);
        stop(r);
        assert_true(drain(f));
    }
}

static void test_http_refused(void **state)
{
    fixture *f = *state;
    us_service_def d;
    base_def(&d);
    int port = closed_port();
    add_http(&d, port, "/healthz");
    rec *r = new_rec(f);
    start(f, &d, r);
    assert_true(wait_health(f, r, US_HEALTH_UNHEALTHY, 3000));
    char cause[256];
    snprintf(cause, sizeof cause,
             "check http://127.0.0.1:%d/healthz failed 3/3: connection refused", port);
    assert_string_equal(us_checker_status(r->c)->cause, cause);
    stop(r);
}

static void test_tcp(void **state)
{
    fixture *f = *state;
    server_start(&f->loop, &f->srv, SRV_HANG, 200);
    int dead = closed_port();

    us_service_def d;
    base_def(&d);
    add_tcp(&d, f->srv.port);
    rec *ok = new_rec(f);
    start(f, &d, ok);
    assert_true(wait_health(f, ok, US_HEALTH_HEALTHY, 3000));
    assert_string_equal(us_checker_status(ok->c)->cause, "");
    stop(ok);

    base_def(&d);
    d.fall = 1;
    add_tcp(&d, dead);
    rec *bad = new_rec(f);
    start(f, &d, bad);
    assert_true(wait_health(f, bad, US_HEALTH_UNHEALTHY, 3000));
    char cause[256];
    snprintf(cause, sizeof cause, "check tcp://127.0.0.1:%d failed 1/1: connection refused", dead);
    assert_string_equal(us_checker_status(bad->c)->cause, cause);
    stop(bad);

    /* A probe passes only when every check passes; the cause names the failing one. */
    base_def(&d);
    d.rise = d.fall = 2;
    add_tcp(&d, f->srv.port);
    add_tcp(&d, dead);
    rec *both = new_rec(f);
    start(f, &d, both);
    assert_true(wait_health(f, both, US_HEALTH_UNHEALTHY, 3000));
    assert_int_equal(us_checker_status(both->c)->ok_run, 0);
    snprintf(cause, sizeof cause, "check tcp://127.0.0.1:%d failed 2/2: connection refused", dead);
    assert_string_equal(us_checker_status(both->c)->cause, cause);
    stop(both);
}

static void test_timeout(void **state)
{
    fixture *f = *state;
    server_start(&f->loop, &f->srv, SRV_HANG, 200);
    us_service_def d;
    base_def(&d);
    d.check_timeout_ms = 300;
    d.check_interval_ms = 400;
    d.fall = 1;
    add_http(&d, f->srv.port, "/slow");
    rec *r = new_rec(f);
    int64_t t0 = us_now_ms();
    start(f, &d, r);
    assert_true(wait_health(f, r, US_HEALTH_UNHEALTHY, 3000));
    int64_t took = us_now_ms() - t0;
    const us_check_status *st = us_checker_status(r->c);
    assert_contains(st->cause, "failed 1/1: timed out after 300 ms");
    assert_int_equal(f->srv.requests, 1); /* the request did arrive */
    if (st->last_latency_ms < 300 || st->last_latency_ms > 450 || took < 300)
        fail_msg("latency %lld ms, took %lld ms, want about 300", (long long)st->last_latency_ms,
                 (long long)took);
    stop(r);
}

static void test_exec(void **state)
{
    fixture *f = *state;
    us_service_def d;
    base_def(&d);
    d.check_timeout_ms = 2000; /* the exit status is under test, not the timeout */
    d.rise = d.fall = 1;
    add_exec(&d, "exit 0");
    rec *ok = new_rec(f);
    start(f, &d, ok);
    assert_true(wait_health(f, ok, US_HEALTH_HEALTHY, 3000));
    stop(ok);

    base_def(&d);
    d.check_timeout_ms = 2000; /* the exit status is under test, not the timeout */
    d.rise = d.fall = 1;
    add_exec(&d, "exit 3");
    rec *bad = new_rec(f);
    start(f, &d, bad);
    assert_true(wait_health(f, bad, US_HEALTH_UNHEALTHY, 3000));
    assert_string_equal(us_checker_status(bad->c)->cause,
                        "check exec:exit 3 failed 1/1: exit status 3");
    stop(bad);

    /* cwd, extra environment and the log file. */
    char cmd[512], log[PATH_MAX];
    snprintf(cmd, sizeof cmd,
             "test \"$US_CHECK_TEST\" = yes && test \"$(pwd)\" = %s && echo check-output-marker",
             f->dir);
    snprintf(log, sizeof log, "%s/check.log", f->dir);
    base_def(&d);
    d.check_timeout_ms = 2000; /* the exit status is under test, not the timeout */
    d.rise = d.fall = 1;
    add_exec(&d, cmd);
    const char *env[] = {"US_CHECK_TEST=yes", NULL};
    rec *envr = new_rec(f);
    envr->c = us_checker_start(&f->loop, &d, f->dir, env, NULL, log, on_change, envr);
    assert_non_null(envr->c);
    assert_true(wait_health(f, envr, US_HEALTH_HEALTHY, 3000));
    stop(envr);
    char *text = ut_read_file(log, NULL);
    assert_non_null(text);
    char *nl = strchr(text, '\n');
    if (nl)
        nl[1] = '\0'; /* the first line */
    assert_string_equal(text, "check-output-marker\n");
    free(text);
}

static void test_exec_timeout_kills_group(void **state)
{
    fixture *f = *state;
    char pidf[PATH_MAX], cmd[PATH_MAX + 64];
    snprintf(pidf, sizeof pidf, "%s/pg", f->dir);
    snprintf(cmd, sizeof cmd, "echo $$ > %s; sleep 30 & sleep 30", pidf);
    us_service_def d;
    base_def(&d);
    d.check_timeout_ms = 300;
    d.check_interval_ms = 400;
    d.fall = 1;
    add_exec(&d, cmd);
    rec *r = new_rec(f);
    r->stop_in_cb = true; /* also: stopping from inside the callback */
    r->c = us_checker_start(&f->loop, &d, NULL, NULL, NULL, NULL, on_change, r);
    assert_non_null(r->c);
    want_count one = {r, 1};
    assert_true(ut_run_until(&f->loop, calls_at_least, &one, 3000));
    assert_null(r->c);
    assert_int_equal(r->seen[0], US_HEALTH_UNHEALTHY);
    pid_t pgid = read_pgid(pidf);
    assert_true(pgid > 1);
    assert_true(drain(f));
    assert_int_equal(r->calls, 1);
    assert_group_gone(pgid);
}

static void test_exec_timeout_cause(void **state)
{
    fixture *f = *state;
    us_service_def d;
    base_def(&d);
    d.check_timeout_ms = 200;
    d.check_interval_ms = 300;
    d.fall = 1;
    add_exec(&d, "sleep 30");
    rec *r = new_rec(f);
    start(f, &d, r);
    assert_true(wait_health(f, r, US_HEALTH_UNHEALTHY, 3000));
    const us_check_status *st = us_checker_status(r->c);
    assert_string_equal(st->cause,
                        "check exec:sleep 30 failed 1/1: timed out after 200 ms (killed)");
    assert_true(st->last_latency_ms >= 200 && st->last_latency_ms < 400);
    stop(r);
}

static void test_grace(void **state)
{
    fixture *f = *state;
    int dead = closed_port();
    us_service_def d;
    base_def(&d);
    d.check_interval_ms = 20;
    d.check_timeout_ms = 20;
    d.fall = 1;
    d.check_grace_ms = 100000;
    add_tcp(&d, dead);
    rec *g = new_rec(f);
    start(f, &d, g);
    want_count three = {g, 3};
    assert_true(ut_run_until(&f->loop, failed_at_least, &three, 3000));
    const us_check_status *st = us_checker_status(g->c);
    assert_int_equal(st->health, US_HEALTH_UNKNOWN);
    assert_int_equal(st->fail_run, 0);
    assert_int_equal(g->calls, 0);
    assert_true(st->failed >= 3 && st->probes == st->failed);
    assert_contains(st->cause, "failed 0/1: connection refused");
    stop(g);

    d.check_grace_ms = 0;
    rec *n = new_rec(f);
    start(f, &d, n);
    assert_true(wait_health(f, n, US_HEALTH_UNHEALTHY, 3000));
    assert_int_equal(us_checker_status(n->c)->fail_run, 1);
    stop(n);
}

static void test_grace_ends_on_first_pass(void **state)
{
    fixture *f = *state;
    server_start(&f->loop, &f->srv, SRV_STATUS, 200);
    us_service_def d;
    base_def(&d);
    d.rise = d.fall = 1;
    d.check_grace_ms = 100000;
    add_http(&d, f->srv.port, "/");
    rec *r = new_rec(f);
    start(f, &d, r);
    assert_true(wait_health(f, r, US_HEALTH_HEALTHY, 3000));
    f->srv.status = 500;
    assert_true(wait_health(f, r, US_HEALTH_UNHEALTHY, 3000));
    assert_contains(us_checker_status(r->c)->cause, "failed 1/1: HTTP status 500");
    stop(r);
}

typedef struct in_flight {
    const server *s;
    const char *pidf;
} in_flight;

static bool both_in_flight(const void *arg)
{
    const in_flight *w = arg;
    return w->s->requests >= 1 && read_pgid(w->pidf) > 0;
}

static void test_stop_in_flight(void **state)
{
    fixture *f = *state;
    server_start(&f->loop, &f->srv, SRV_HANG, 200);
    char pidf[PATH_MAX], cmd[PATH_MAX + 64];
    snprintf(pidf, sizeof pidf, "%s/pg", f->dir);
    snprintf(cmd, sizeof cmd, "echo $$ > %s; sleep 30 & sleep 30", pidf);
    us_service_def d;
    base_def(&d);
    d.check_interval_ms = d.check_timeout_ms = 5000;
    d.rise = d.fall = 1;
    add_http(&d, f->srv.port, "/");
    add_exec(&d, cmd);
    add_tcp(&d, f->srv.port);
    rec *r = new_rec(f);
    start(f, &d, r);
    in_flight w = {&f->srv, pidf};
    assert_true(ut_run_until(&f->loop, both_in_flight, &w, 3000));
    pid_t pgid = read_pgid(pidf);
    assert_true(us_pgrp_alive(pgid));
    assert_int_equal(us_checker_status(r->c)->probes, 0);
    stop(r);
    assert_true(drain(f));
    assert_int_equal(r->calls, 0);
    assert_group_gone(pgid);
}

static void test_stop_before_first_probe(void **state)
{
    fixture *f = *state;
    us_service_def d;
    base_def(&d);
    add_exec(&d, "exit 0");
    rec *r = new_rec(f);
    start(f, &d, r);
    stop(r);
    us_checker_stop(NULL);
    assert_true(drain(f));
    assert_int_equal(r->calls, 0);
}

static void test_busy_beat_is_late_not_skipped(void **state)
{
    fixture *f = *state;
    /* timeout == interval: each probe ends just after its successor's beat. */
    us_service_def d;
    base_def(&d);
    d.check_interval_ms = d.check_timeout_ms = 100;
    d.fall = 100;
    add_exec(&d, "sleep 30");
    rec *r = new_rec(f);
    int64_t t0 = us_now_ms();
    start(f, &d, r);
    want_count six = {r, 6};
    assert_true(ut_run_until(&f->loop, probes_at_least, &six, 3000));
    int64_t took = us_now_ms() - t0;
    /* Skipping busy beats would take 1100 ms or more. */
    if (took < 600 || took >= 1050)
        fail_msg("6 probes took %lld ms, want 600..1050", (long long)took);
    stop(r);
}

static void test_long_text_cause(void **state)
{
    fixture *f = *state;
    us_service_def d;
    base_def(&d);
    d.check_timeout_ms = 2000; /* the exit status is under test, not the timeout */
    d.rise = d.fall = 1;
    char cmd[900];
    memset(cmd, 'x', sizeof cmd - 1);
    cmd[sizeof cmd - 1] = '\0';
    memcpy(cmd, "exit 3 #", 8);
    add_exec(&d, cmd);
    rec *r = new_rec(f);
    start(f, &d, r);
    assert_true(wait_health(f, r, US_HEALTH_UNHEALTHY, 3000));
    const char *cause = us_checker_status(r->c)->cause;
    assert_true(strlen(cause) < US_REASON_MAX);
    assert_true(strncmp(cause, "check exec:exit 3 #xxx", 22) == 0);
    const char *tail = "... failed 1/1: exit status 3";
    assert_string_equal(cause + strlen(cause) - strlen(tail), tail);
    stop(r);
}

int main(void)
{
    /* Orphans of killed check groups reparent to us, so that the tests can reap them. */
    prctl(PR_SET_CHILD_SUBREAPER, 1);
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_health_step),
        cmocka_unit_test_setup_teardown(test_no_checks, setup, teardown),
        cmocka_unit_test_setup_teardown(test_http_rise_fall, setup, teardown),
        cmocka_unit_test_setup_teardown(test_http_status_range, setup, teardown),
        cmocka_unit_test_setup_teardown(test_http_bad_responses, setup, teardown),
        cmocka_unit_test_setup_teardown(test_http_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tcp, setup, teardown),
        cmocka_unit_test_setup_teardown(test_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_exec, setup, teardown),
        cmocka_unit_test_setup_teardown(test_exec_timeout_kills_group, setup, teardown),
        cmocka_unit_test_setup_teardown(test_exec_timeout_cause, setup, teardown),
        cmocka_unit_test_setup_teardown(test_grace, setup, teardown),
        cmocka_unit_test_setup_teardown(test_grace_ends_on_first_pass, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stop_in_flight, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stop_before_first_probe, setup, teardown),
        cmocka_unit_test_setup_teardown(test_busy_beat_is_late_not_skipped, setup, teardown),
        cmocka_unit_test_setup_teardown(test_long_text_cause, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
