/* check.c — see check.h.
 *
 * Lifetime: every http/tcp attempt is a heap `conn` owning a uv_tcp_t and a timeout timer; it
 * frees itself from its close callbacks, so a probe can end (and the next one start) while the
 * previous attempt's handles are still closing. The checker holds one reference for its beat
 * timer and one per live conn and is freed when the last closes, which can only happen after
 * us_checker_stop: a callback that stops the checker leaves it valid until the loop runs again.
 * Exec checks are owned by the supervisor; stopping detaches them (data = NULL) and kills them.
 */
#include "node/check.h"

#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/lease.h"
#include "lib/log.h"
#include "node/privilege.h"
#include "node/supervisor.h"
#include "lib/clock.h"

#define WHY_MAX 128
#define HTTP_BUF 1024 /* a status line longer than this is malformed */

typedef struct conn conn;

typedef struct slot {
    bool done, pass;
    int64_t latency_ms;
    char why[WHY_MAX];
    conn *conn;    /* http/tcp attempt in flight */
    us_proc *proc; /* exec check in flight */
} slot;

struct us_checker {
    uv_loop_t *loop;
    us_service_def def;
    char *cwd, *log_path;
    char **env;
    us_cred cred;
    bool has_cred;
    us_checker_cb cb;
    void *data;
    uv_timer_t tick;
    int refs; /* the tick timer + conns whose handles are not closed yet */
    bool stopping;
    bool running;     /* a probe is in flight */
    bool overdue;     /* its beat came while the previous probe still ran */
    bool passed_once; /* ends the start grace */
    int pending;      /* checks of the running probe not yet decided */
    int64_t start_ms, probe_start_ms;
    int64_t probe_start_ns; /* for the observer: finer than the ms in the status */
    slot slots[US_MAX_CHECKS];
    us_check_status st;
};

struct conn {
    us_checker *c;
    int idx;
    bool http;
    bool done;   /* decided (or abandoned by stop): callbacks ignore what follows */
    int closing; /* handles whose close callback is pending */
    uv_tcp_t tcp;
    uv_timer_t timer;
    uv_connect_t connect_req;
    uv_write_t write_req;
    char req[512];
    size_t req_len;
    char buf[HTTP_BUF];
    size_t len;
};

static void start_probe(us_checker *c);
static void on_tick(uv_timer_t *t);

static us_probe_observer g_observer;
static void *g_observer_data;

void us_check_set_observer(us_probe_observer fn, void *data)
{
    g_observer = fn;
    g_observer_data = data;
}

/* ---- rise / fall ---- */

us_health us_health_step(us_health cur, int *ok_run, int *fail_run, bool pass, int rise, int fall)
{
    if (pass) {
        *fail_run = 0;
        if (*ok_run < INT_MAX)
            (*ok_run)++;
        return *ok_run >= rise ? US_HEALTH_HEALTHY : cur;
    }
    *ok_run = 0;
    if (*fail_run < INT_MAX)
        (*fail_run)++;
    return *fail_run >= fall ? US_HEALTH_UNHEALTHY : cur;
}

/* ---- lifetime ---- */

static void free_env(char **env)
{
    for (size_t i = 0; env && env[i]; i++)
        free(env[i]);
    free(env);
}

static void checker_unref(us_checker *c)
{
    if (--c->refs > 0)
        return;
    free(c->cwd);
    free(c->log_path);
    free_env(c->env);
    free(c);
}

static void on_tick_closed(uv_handle_t *h)
{
    checker_unref(h->data);
}

static void on_conn_closed(uv_handle_t *h)
{
    conn *k = h->data;
    if (--k->closing > 0)
        return;
    us_checker *c = k->c;
    free(k);
    checker_unref(c);
}

/* ---- probe bookkeeping ---- */

static void set_cause(us_checker *c, int i, const char *why)
{
    /* Truncate the operator's text rather than the reason: the reason is what one acts on. */
    char tail[WHY_MAX + 48];
    int tl = snprintf(tail, sizeof tail, " failed %d/%d: %s", c->st.fail_run, c->def.fall, why);
    if (tl < 0) {
        tl = 0;
        tail[0] = '\0';
    } else if ((size_t)tl >= sizeof tail) {
        tl = (int)sizeof tail - 1;
    }
    const char *text = c->def.checks[i].text;
    int room = US_REASON_MAX - 1 - (int)strlen("check ") - tl;
    int tlen = (int)strnlen(text, sizeof c->def.checks[i].text);
    const char *ell = "";
    if (tlen > room) {
        tlen = room > 3 ? room - 3 : 0;
        ell = room > 3 ? "..." : "";
    }
    snprintf(c->st.cause, sizeof c->st.cause, "check %.*s%s%s", tlen, text, ell, tail);
}

static void end_probe(us_checker *c)
{
    us_check_status *s = &c->st;
    c->running = false;
    int bad = -1;
    int64_t latency = 0;
    for (int i = 0; i < c->def.n_checks; i++) {
        if (c->slots[i].latency_ms > latency)
            latency = c->slots[i].latency_ms;
        if (!c->slots[i].pass && bad < 0)
            bad = i;
    }
    bool pass = bad < 0;
    s->probes++;
    s->last_latency_ms = latency;
    if (pass)
        c->passed_once = true;
    else
        s->failed++;
    bool counts = pass || c->passed_once || us_now_ms() - c->start_ms >= c->def.check_grace_ms;
    us_health old = s->health;
    if (counts)
        s->health = us_health_step(old, &s->ok_run, &s->fail_run, pass, c->def.rise, c->def.fall);
    if (!pass) {
        set_cause(c, bad, c->slots[bad].why);
        us_debug("%s: %s%s", c->def.name, s->cause, counts ? "" : " (start grace)");
    }
    if (g_observer)
        g_observer(c->def.name, pass, (double)(us_now_ns() - c->probe_start_ns) / 1e9,
                   g_observer_data);
    if (s->health != old && c->cb)
        c->cb(c, c->data); /* may stop the checker; it stays allocated until the loop runs */
    if (!c->stopping && c->overdue)
        start_probe(c);
}

static void slot_done(us_checker *c, int i, bool pass, const char *why)
{
    slot *sl = &c->slots[i];
    if (sl->done)
        return;
    sl->done = true;
    sl->pass = pass;
    sl->latency_ms = us_now_ms() - c->probe_start_ms;
    us_strlcpy(sl->why, why, sizeof sl->why);
    if (--c->pending == 0)
        end_probe(c);
}

/* ---- http / tcp ---- */

static void conn_end(conn *k, bool pass, const char *why)
{
    if (k->done)
        return;
    k->done = true;
    k->closing = 2;
    uv_close((uv_handle_t *)&k->tcp, on_conn_closed);
    uv_close((uv_handle_t *)&k->timer, on_conn_closed);
    us_checker *c = k->c;
    if (c->slots[k->idx].conn == k)
        c->slots[k->idx].conn = NULL;
    if (!c->stopping)
        slot_done(c, k->idx, pass, why);
}

static void on_conn_timeout(uv_timer_t *t)
{
    conn *k = t->data;
    char why[64];
    snprintf(why, sizeof why, "timed out after %d ms", k->c->def.check_timeout_ms);
    conn_end(k, false, why);
}

/* "HTTP/1.1 200 OK": 0 and the status, or -1 when the line is not a status line. */
static int parse_status_line(const char *s, size_t n, int *status)
{
    if (n < 5 || memcmp(s, "HTTP/", 5) != 0)
        return -1;
    size_t i = 5;
    bool digit = false;
    while (i < n && ((s[i] >= '0' && s[i] <= '9') || s[i] == '.'))
        digit |= s[i++] != '.';
    if (!digit || i >= n || s[i] != ' ')
        return -1;
    while (i < n && s[i] == ' ')
        i++;
    if (i + 3 > n)
        return -1;
    int v = 0;
    for (int k = 0; k < 3; k++, i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    if (i < n && s[i] != ' ' && s[i] != '\r' && s[i] != '\n')
        return -1;
    *status = v;
    return 0;
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    conn *k = h->data;
    *buf = uv_buf_init(k->buf + k->len, (unsigned)(sizeof k->buf - k->len));
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    (void)buf;
    conn *k = s->data;
    if (k->done)
        return;
    if (nread == UV_EOF) {
        conn_end(k, false, "connection closed before the status line");
        return;
    }
    if (nread < 0) {
        conn_end(k, false, uv_strerror((int)nread));
        return;
    }
    k->len += (size_t)nread;
    size_t cmp = k->len < 5 ? k->len : 5;
    if (memcmp(k->buf, "HTTP/", cmp) != 0) {
        conn_end(k, false, "malformed HTTP response");
        return;
    }
    const char *nl = memchr(k->buf, '\n', k->len);
    if (!nl) {
        if (k->len == sizeof k->buf)
            conn_end(k, false, "malformed HTTP response");
        return;
    }
    int status;
    if (parse_status_line(k->buf, (size_t)(nl - k->buf), &status) != 0) {
        conn_end(k, false, "malformed HTTP response");
        return;
    }
    char why[32];
    snprintf(why, sizeof why, "HTTP status %d", status);
    conn_end(k, status >= k->c->def.check_status_min && status <= k->c->def.check_status_max, why);
}

static void on_write(uv_write_t *w, int status)
{
    conn *k = w->data;
    if (!k->done && status < 0)
        conn_end(k, false, uv_strerror(status));
}

static void on_connect(uv_connect_t *req, int status)
{
    conn *k = req->data;
    if (k->done)
        return;
    if (status < 0) {
        conn_end(k, false, uv_strerror(status));
        return;
    }
    if (!k->http) {
        conn_end(k, true, "");
        return;
    }
    uv_buf_t b = uv_buf_init(k->req, (unsigned)k->req_len);
    int r = uv_write(&k->write_req, (uv_stream_t *)&k->tcp, &b, 1, on_write);
    if (r == 0)
        r = uv_read_start((uv_stream_t *)&k->tcp, on_alloc, on_read);
    if (r < 0)
        conn_end(k, false, uv_strerror(r));
}

static void launch_net(us_checker *c, int i)
{
    const us_check_def *d = &c->def.checks[i];
    conn *k = calloc(1, sizeof *k);
    if (!k) {
        slot_done(c, i, false, "out of memory");
        return;
    }
    k->c = c;
    k->idx = i;
    k->http = d->kind == US_CHECK_HTTP;
    uv_tcp_init(c->loop, &k->tcp);
    uv_timer_init(c->loop, &k->timer);
    k->tcp.data = k->timer.data = k->connect_req.data = k->write_req.data = k;
    c->refs++;
    c->slots[i].conn = k;
    if (k->http) {
        int n = snprintf(k->req, sizeof k->req,
                         "GET %s HTTP/1.0\r\nHost: %s:%d\r\nUser-Agent: understudy-check\r\n"
                         "Connection: close\r\n\r\n",
                         d->path[0] ? d->path : "/", d->host, d->port);
        if (n < 0 || (size_t)n >= sizeof k->req) {
            conn_end(k, false, "request too long");
            return;
        }
        k->req_len = (size_t)n;
    }
    struct sockaddr_in sa;
    int r = uv_ip4_addr(d->host, d->port, &sa);
    if (r < 0) {
        conn_end(k, false, "invalid IPv4 address");
        return;
    }
    r = uv_tcp_connect(&k->connect_req, &k->tcp, (const struct sockaddr *)&sa, on_connect);
    if (r < 0) {
        conn_end(k, false, uv_strerror(r));
        return;
    }
    uv_timer_start(&k->timer, on_conn_timeout, (uint64_t)c->def.check_timeout_ms, 0);
}

/* ---- exec ---- */

static void on_exec_exit(us_proc *p, int status, void *data)
{
    us_checker *c = data;
    if (!c) /* stopped meanwhile */
        return;
    for (int i = 0; i < c->def.n_checks; i++) {
        if (c->slots[i].proc != p)
            continue;
        c->slots[i].proc = NULL;
        char why[64];
        if (status == US_PROC_TIMEOUT)
            snprintf(why, sizeof why, "timed out after %d ms (killed)", c->def.check_timeout_ms);
        else
            snprintf(why, sizeof why, "exit status %d", status);
        slot_done(c, i, status == 0, why);
        return;
    }
}

static void launch_exec(us_checker *c, int i)
{
    us_proc_opts o = {.cmd = us_check_cmd(&c->def.checks[i]),
                      .env = (const char *const *)c->env,
                      .cred = c->has_cred ? &c->cred : NULL,
                      .cwd = c->cwd,
                      .log_path = c->log_path,
                      .timeout_ms = c->def.check_timeout_ms,
                      .on_exit = on_exec_exit,
                      .data = c};
    us_proc *p;
    int r = us_proc_spawn(c->loop, &o, &p);
    if (r < 0) {
        char why[WHY_MAX];
        snprintf(why, sizeof why, "cannot run: %s", strerror(-r));
        slot_done(c, i, false, why);
        return;
    }
    c->slots[i].proc = p;
}

/* ---- the beat ---- */

static void start_probe(us_checker *c)
{
    c->running = true;
    c->overdue = false;
    c->probe_start_ms = us_now_ms();
    c->probe_start_ns = us_now_ns();
    uv_timer_start(&c->tick, on_tick, (uint64_t)c->def.check_interval_ms, 0);
    memset(c->slots, 0, sizeof c->slots);
    /* One extra count so that checks failing synchronously cannot end the probe before all
     * have been launched. */
    c->pending = c->def.n_checks + 1;
    for (int i = 0; i < c->def.n_checks; i++) {
        if (c->def.checks[i].kind == US_CHECK_EXEC)
            launch_exec(c, i);
        else
            launch_net(c, i);
    }
    if (--c->pending == 0)
        end_probe(c);
}

static void on_tick(uv_timer_t *t)
{
    us_checker *c = t->data;
    if (c->stopping)
        return;
    if (c->running) {
        c->overdue = true;
        return;
    }
    start_probe(c);
}

/* ---- public ---- */

us_checker *us_checker_start(uv_loop_t *loop, const us_service_def *d, const char *cwd,
                             const char *const *env, const us_cred *cred, const char *log_path,
                             us_checker_cb cb, void *data)
{
    if (!d || d->n_checks <= 0)
        return NULL;
    us_checker *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->def = *d;
    if (cred) {
        c->cred = *cred;
        c->has_cred = true;
    }
    if (c->def.n_checks > US_MAX_CHECKS)
        c->def.n_checks = US_MAX_CHECKS;
    /* The parser enforces these; keep the arithmetic sane for hand-built definitions. */
    if (c->def.check_interval_ms <= 0)
        c->def.check_interval_ms = 1000;
    if (c->def.check_timeout_ms <= 0)
        c->def.check_timeout_ms = 500;
    if (c->def.rise < 1)
        c->def.rise = 1;
    if (c->def.fall < 1)
        c->def.fall = 1;
    bool ok = true;
    if (cwd && !(c->cwd = strdup(cwd)))
        ok = false;
    if (log_path && !(c->log_path = strdup(log_path)))
        ok = false;
    if (env) {
        size_t n = 0;
        while (env[n])
            n++;
        if (!(c->env = calloc(n + 1, sizeof *c->env)))
            ok = false;
        for (size_t i = 0; ok && i < n; i++)
            if (!(c->env[i] = strdup(env[i])))
                ok = false;
    }
    if (!ok) {
        free(c->cwd);
        free(c->log_path);
        free_env(c->env);
        free(c);
        return NULL;
    }
    c->loop = loop;
    c->cb = cb;
    c->data = data;
    c->st.health = US_HEALTH_UNKNOWN;
    c->st.last_latency_ms = -1;
    c->start_ms = us_now_ms();
    uv_timer_init(loop, &c->tick);
    c->tick.data = c;
    c->refs = 1;
    /* Not synchronously: the first result must not reach the caller before it has `c`. */
    uv_timer_start(&c->tick, on_tick, 0, 0);
    return c;
}

void us_checker_stop(us_checker *c)
{
    if (!c || c->stopping)
        return;
    c->stopping = true;
    for (int i = 0; i < c->def.n_checks; i++) {
        slot *sl = &c->slots[i];
        if (sl->conn)
            conn_end(sl->conn, false, "stopped");
        if (sl->proc) {
            us_proc_set_data(sl->proc, NULL);
            us_proc_kill(sl->proc, SIGKILL);
            sl->proc = NULL;
        }
    }
    uv_close((uv_handle_t *)&c->tick, on_tick_closed);
}

const us_check_status *us_checker_status(const us_checker *c)
{
    return &c->st;
}
