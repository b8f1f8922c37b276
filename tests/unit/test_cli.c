/* test_cli.c — us_cli_main against fake agents: the api module with canned handlers, each on
 * its own loop in its own thread. Output is captured by pointing fds 1 and 2 at temp files. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "net/api.h"
#include "cli/cli.h"
#include "cli/commands.h"
#include "lib/key.h"
#include "lib/version.h"
#include "helpers.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

typedef struct agent {
    uv_loop_t loop;
    us_api *api;
    uv_async_t stop;
    uv_timer_t change; /* completes a switchover / removal a little later */
    pthread_t thread;
    char addr[64];
    /* behaviour */
    char redirect_to[64]; /* answer mutating requests with 421 pointing there */
    int redirects;        /* ... this many times (0 = always) */
    int no_leader;        /* answer this many requests with 503 first */
    /* cluster state served by GET /v1/status */
    char active[16];
    char pending_active[16];
    json_int_t epoch;
    bool n3_left;
    bool selfheal; /* status shows health, pause, drain, failures */
    bool paused, drained;
    bool stale;              /* a local answer says it may be stale */
    char last_consistent[8]; /* the `consistent` query of the last status request, "-" = none */
    /* events served by GET /v1/events: seq 1..n_events (see event_json) */
    int n_events;
    int grow;         /* each events request after the first adds this many */
    int signal_after; /* raise SIGTERM in the process at this events request (0 = never) */
    int die_after;    /* stop answering at all after this events request (0 = never) */
    uv_timer_t die;
    int n_event_gets;
    char last_after[24], last_limit[24], last_service[16], last_node[16];
    char seen_after[512]; /* every `after`, space separated */
    /* what the agent saw; read only after agent_stop */
    int n_posts;
    char last_target[256];
    char last_force[8]; /* the switchover's force= */
    char last_file[64];
    char last_to[16];
    char last_body[4096];
    char last_by[40];
} agent;

/* ---- the fake agent (its own thread) ---- */

static json_t *status_json(const agent *a)
{
    json_t *n3 =
        json_pack("{s:s, s:s, s:s, s:s, s:b}", "name", "n3", "address", "127.0.0.1:7103", "api",
                  "127.0.0.1:7203", "state", a->n3_left ? "left" : "dead", "voter", 0);
    return json_pack(
        "{s:{s:s, s:s, s:i, s:b}, s:[{s:s, s:s, s:s, s:s, s:b}, {s:s, s:s, s:s, s:s, s:b}, o],"
        " s:[{s:s, s:s?, s:I, s:s, s:[{s:s, s:s, s:i}, {s:s, s:s, s:n}, {s:s, s:s, s:n}]}]}",
        "cluster", "name", "demo", "leader", "n1", "term", 4, "has_quorum", 1, "nodes", "name",
        "n1", "address", "127.0.0.1:7101", "api", a->addr, "state", "alive", "voter", 1, "name",
        "n2", "address", "127.0.0.1:7102", "api", a->addr, "state", "suspect", "voter", 1, n3,
        "services", "name", "web", "active", a->active[0] ? a->active : NULL, "epoch", a->epoch,
        "reason", "switchover requested by operator", "instances", "node", "n2", "role", "active",
        "pid", 4242, "node", "n1", "role", "standby", "pid", "node", "n3", "role", "failed", "pid");
}

/* The self-healing fields of the real status (agent_api.c) on top of the basic one. */
static json_t *status_selfheal_json(const agent *a)
{
    json_t *st = status_json(a);
    json_t *nodes = json_object_get(st, "nodes");
    json_object_set_new(json_array_get(nodes, 0), "drained", json_false());
    json_object_set_new(json_array_get(nodes, 1), "drained", json_true());
    json_t *web = json_array_get(json_object_get(st, "services"), 0);
    json_object_set_new(web, "paused", json_boolean(a->paused));
    json_object_set_new(web, "recover", json_false());
    /* An hour from now: the ban is in force whatever the clock says. */
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    json_int_t now = (json_int_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
    json_object_set_new(
        web, "restart",
        json_pack("{s:s, s:I, s:i}", "node", "n2", "at_ms", now + 3000, "restarts", 2));
    json_object_set_new(web, "failures",
                        json_pack("[{s:s, s:i, s:I, s:I, s:b}, {s:s, s:i, s:I, s:I, s:b}]", "node",
                                  "n3", "failures", 3, "last_ms", now - 1000, "banned_until_ms",
                                  now + 3600 * 1000, "banned", 1, "node", "n1", "failures", 1,
                                  "last_ms", now - 5000, "banned_until_ms", (json_int_t)0, "banned",
                                  0));
    json_object_set_new(web, "checks", json_pack("[s]", "http://127.0.0.1:8080/healthz"));
    json_object_set_new(web, "on_failure", json_string("failover"));
    json_object_set_new(web, "failback", json_false());
    json_t *inst = json_object_get(web, "instances");
    json_object_update_new(json_array_get(inst, 0),
                           json_pack("{s:s, s:n, s:i, s:i, s:i, s:i, s:n}", "health", "healthy",
                                     "cause", "check_ms", 3, "probes", 120, "probes_failed", 0,
                                     "restarts", 0, "restart_cause"));
    json_object_update_new(json_array_get(inst, 1),
                           json_pack("{s:s, s:n, s:n, s:i, s:i, s:i, s:s}", "health", "unknown",
                                     "cause", "check_ms", "probes", 0, "probes_failed", 0,
                                     "restarts", 2, "restart_cause", "exited with status 1"));
    json_object_update_new(
        json_array_get(inst, 2),
        json_pack("{s:s, s:s, s:i, s:i, s:i, s:i, s:n}", "health", "unhealthy", "cause",
                  "check http://127.0.0.1:8080/healthz failed 3/3: connection "
                  "refused",
                  "check_ms", 1, "probes", 40, "probes_failed", 3, "restarts", 0, "restart_cause"));
    return st;
}

static void h_status(us_api_req *r, void *data)
{
    agent *a = data;
    const char *c = us_api_req_query(r, "consistent");
    snprintf(a->last_consistent, sizeof a->last_consistent, "%s", c ? c : "-");
    json_t *st = a->selfheal ? status_selfheal_json(a) : status_json(a);
    bool stale = a->stale && !c; /* the leader's view is never stale */
    if (!a->stale) {             /* the other tests' agent: no consistency block (an older one) */
        us_api_reply_json(r, 200, st);
        return;
    }
    json_object_set_new(st, "node", json_string(c ? "n1" : "n3"));
    json_object_set_new(
        st, "consistency",
        json_pack("{s:s, s:b, s:o}", "mode", c ? "consistent" : "local", "stale", stale, "reason",
                  stale ? json_string("not caught up with leader n1: applied index 5 of its "
                                      "commit index 9")
                        : json_null()));
    us_api_reply_json(r, 200, st);
}

/* Event `seq`: odd ones about web on n1, even ones about db on n2. */
static json_t *event_json(int seq)
{
    bool odd = seq % 2;
    return json_pack("{s:i, s:I, s:s, s:s, s:s, s:s, s:s, s:s, s:s}", "seq", seq, "time_ms",
                     (json_int_t)1795689662123 + seq, "time", "2026-11-26T10:41:02.123Z", "kind",
                     odd ? "role" : "health", "service", odd ? "web" : "db", "node",
                     odd ? "n1" : "n2", "from", odd ? "standby" : "healthy", "to",
                     odd ? "active" : "unhealthy", "cause", odd ? "instance on n2 failed" : "");
}

static void on_die(uv_timer_t *t)
{
    agent *a = t->data;
    us_api_stop(a->api);
    a->api = NULL;
}

static void h_events(us_api_req *r, void *data)
{
    agent *a = data;
    a->n_event_gets++;
    if (a->n_event_gets > 1)
        a->n_events += a->grow;
    const char *after_s = us_api_req_query(r, "after"), *limit_s = us_api_req_query(r, "limit");
    const char *service = us_api_req_query(r, "service"), *node = us_api_req_query(r, "node");
    snprintf(a->last_after, sizeof a->last_after, "%s", after_s ? after_s : "");
    snprintf(a->last_limit, sizeof a->last_limit, "%s", limit_s ? limit_s : "");
    snprintf(a->last_service, sizeof a->last_service, "%s", service ? service : "");
    snprintf(a->last_node, sizeof a->last_node, "%s", node ? node : "");
    size_t used = strlen(a->seen_after);
    snprintf(a->seen_after + used, sizeof a->seen_after - used, "%s%s", used ? " " : "",
             after_s ? after_s : "-");
    int after = after_s ? atoi(after_s) : 0, limit = limit_s ? atoi(limit_s) : 100;
    json_t *events = json_array();
    bool more = false;
    for (int q = after + 1; q <= a->n_events; q++) {
        json_t *e = event_json(q);
        if ((service && strcmp(json_string_value(json_object_get(e, "service")), service) != 0) ||
            (node && strcmp(json_string_value(json_object_get(e, "node")), node) != 0)) {
            json_decref(e);
            continue;
        }
        if ((int)json_array_size(events) == limit) {
            json_decref(e);
            more = true;
            break;
        }
        json_array_append_new(events, e);
    }
    us_api_reply_json(r, 200,
                      json_pack("{s:i, s:i, s:b, s:o}", "first", a->n_events ? 1 : 0, "last",
                                a->n_events, "more", more, "events", events));
    if (a->signal_after && a->n_event_gets == a->signal_after)
        kill(getpid(), SIGTERM);
    if (a->die_after && a->n_event_gets == a->die_after)
        uv_timer_start(&a->die, on_die, 0, 0);
}

static void h_version(us_api_req *r, void *data)
{
    (void)data;
    us_api_reply_json(r, 200, json_pack("{s:s}", "version", "0.1.0"));
}

/* Common part of every mutating request: record it, then redirect or refuse as configured. */
static bool gate(agent *a, us_api_req *r)
{
    a->n_posts++;
    snprintf(a->last_target, sizeof a->last_target, "%s", us_api_req_path(r));
    const char *file = us_api_req_query(r, "file");
    snprintf(a->last_file, sizeof a->last_file, "%s", file ? file : "");
    const char *to = us_api_req_query(r, "to");
    snprintf(a->last_to, sizeof a->last_to, "%s", to ? to : "");
    snprintf(a->last_body, sizeof a->last_body, "%s", us_api_req_body(r, NULL));
    const char *by = us_api_req_query(r, "by");
    snprintf(a->last_by, sizeof a->last_by, "%s", by ? by : "");
    const char *node = us_api_req_query(r, "node");
    snprintf(a->last_node, sizeof a->last_node, "%s", node ? node : "");
    if (a->redirect_to[0] && (a->redirects == 0 || a->n_posts <= a->redirects)) {
        us_api_reply_json(
            r, 421,
            json_pack("{s:s, s:s}", "error", "not the leader", "leader_api", a->redirect_to));
        return false;
    }
    if (a->no_leader > 0) {
        a->no_leader--;
        us_api_reply_error(r, 503, "no leader");
        return false;
    }
    return true;
}

static void h_apply(us_api_req *r, void *data)
{
    agent *a = data;
    if (!gate(a, r))
        return;
    if (strstr(us_api_req_body(r, NULL), "bad")) {
        us_api_reply_json(r, 400,
                          json_pack("{s:s, s:[s, s]}", "error", "invalid services file", "problems",
                                    "services.ini:2: run: missing value",
                                    "services.ini:5: standbys: expected a number >= 0, got \"x\""));
        return;
    }
    us_api_reply_json(r, 200,
                      json_pack("{s:[s, s], s:[s]}", "services", "web", "db", "removed", "old"));
}

static void on_change(uv_timer_t *t)
{
    agent *a = t->data;
    if (a->pending_active[0]) {
        snprintf(a->active, sizeof a->active, "%s", a->pending_active);
        a->pending_active[0] = '\0';
        a->epoch++;
    } else {
        a->n3_left = true;
    }
}

static void h_switchover(us_api_req *r, void *data)
{
    agent *a = data;
    if (!gate(a, r))
        return;
    char svc[64] = "", action[32] = "";
    sscanf(us_api_req_path(r), "/v1/services/%63[^/]/%31s", svc, action);
    if (strcmp(svc, "web") != 0) {
        us_api_reply_error(r, 404, "no such service: %s", svc);
        return;
    }
    if (strcmp(action, "pause") == 0 || strcmp(action, "resume") == 0) {
        bool want = action[0] == 'p';
        int status = a->paused == want ? 200 : 202;
        a->paused = want;
        us_api_reply_json(r, status, json_pack("{s:s, s:b}", "service", "web", "paused", want));
        return;
    }
    if (strcmp(action, "reset") == 0) {
        const char *node = us_api_req_query(r, "node");
        us_api_reply_json(r, 200, json_pack("{s:s, s:s?}", "service", "web", "node", node));
        return;
    }
    const char *to = us_api_req_query(r, "to");
    const char *force = us_api_req_query(r, "force");
    snprintf(a->last_force, sizeof a->last_force, "%s", force ? force : "");
    us_api_reply_json(r, 202,
                      json_pack("{s:s, s:s, s:s?, s:I}", "service", "web", "from", a->active, "to",
                                to, "epoch", a->epoch));
    /* Like the real thing: no active while the old one demotes, then the new one under epoch+1. */
    snprintf(a->pending_active, sizeof a->pending_active, "%s", to ? to : "n1");
    a->active[0] = '\0';
    uv_timer_start(&a->change, on_change, 300, 0);
}

static void h_remove(us_api_req *r, void *data)
{
    agent *a = data;
    if (!gate(a, r))
        return;
    char node[64] = "", action[32] = "";
    sscanf(us_api_req_path(r), "/v1/nodes/%63[^/]/%31s", node, action);
    if (strcmp(node, "n2") != 0 && strcmp(node, "n3") != 0) {
        us_api_reply_error(r, 404, "unknown node '%s'", node);
        return;
    }
    if (strcmp(action, "drain") == 0 || strcmp(action, "undrain") == 0) {
        bool want = action[0] == 'd';
        int status = a->drained == want ? 200 : 202;
        a->drained = want;
        us_api_reply_json(r, status, json_pack("{s:s, s:b}", "node", node, "drained", want));
        return;
    }
    us_api_reply_json(r, 202, json_pack("{s:s}", "node", "n3"));
    uv_timer_start(&a->change, on_change, 200, 0);
}

static void on_stop(uv_async_t *h)
{
    agent *a = h->data;
    if (a->api)
        us_api_stop(a->api);
    uv_close((uv_handle_t *)&a->stop, NULL);
    uv_close((uv_handle_t *)&a->change, NULL);
    uv_close((uv_handle_t *)&a->die, NULL);
}

static void *agent_main(void *arg)
{
    agent *a = arg;
    uv_run(&a->loop, UV_RUN_DEFAULT);
    return NULL;
}

static agent *agent_start(void)
{
    agent *a = calloc(1, sizeof *a);
    assert_non_null(a);
    assert_int_equal(uv_loop_init(&a->loop), 0);
    snprintf(a->addr, sizeof a->addr, "127.0.0.1:%d", ut_free_port());
    char err[256];
    assert_int_equal(us_api_start(&a->loop, a->addr, &a->api, err, sizeof err), 0);
    us_api_route(a->api, "GET", "/v1/status", h_status, a);
    us_api_route(a->api, "GET", "/v1/version", h_version, a);
    us_api_route(a->api, "POST", "/v1/services", h_apply, a);
    us_api_route(a->api, "POST", "/v1/services/", h_switchover, a);
    us_api_route(a->api, "POST", "/v1/nodes/", h_remove, a);
    us_api_route(a->api, "GET", "/v1/events", h_events, a);
    uv_async_init(&a->loop, &a->stop, on_stop);
    uv_timer_init(&a->loop, &a->change);
    uv_timer_init(&a->loop, &a->die);
    a->stop.data = a;
    a->change.data = a;
    a->die.data = a;
    snprintf(a->active, sizeof a->active, "n2");
    a->epoch = 7;
    return a;
}

static void agent_run(agent *a)
{
    pthread_create(&a->thread, NULL, agent_main, a);
}

static void agent_stop(agent *a)
{
    uv_async_send(&a->stop);
    pthread_join(a->thread, NULL);
    assert_int_equal(uv_loop_close(&a->loop), 0);
}

/* ---- running the client ---- */

typedef struct run_result {
    int rc;
    char *out;
    char *err;
    long ms;
} run_result;

static char *slurp(FILE *f)
{
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    rewind(f);
    char *s = calloc(1, (size_t)n + 1);
    if (n > 0 && fread(s, 1, (size_t)n, f) != (size_t)n)
        fail_msg("short read of captured output");
    fclose(f);
    return s;
}

static int g_tty_cols = 0; /* columns of the pseudo-terminal (0 = it does not say) */

/* Run the client with stdout on a temp file, or on a pseudo-terminal when `tty`. */
static run_result run_cliv(bool tty, const char *arg, va_list ap)
{
    char *argv[16] = {"understudy"};
    int argc = 1;
    for (const char *s = arg; s && argc < 15; s = va_arg(ap, const char *))
        argv[argc++] = (char *)s;
    argv[argc] = NULL;

    fflush(stdout);
    fflush(stderr);
    FILE *out = tmpfile(), *err = tmpfile();
    int master = -1, slave = -1;
    if (tty) {
        master = posix_openpt(O_RDWR | O_NOCTTY);
        assert_true(master >= 0 && grantpt(master) == 0 && unlockpt(master) == 0);
        slave = open(ptsname(master), O_RDWR | O_NOCTTY);
        assert_true(slave >= 0);
        struct winsize ws = {.ws_row = 24, .ws_col = (unsigned short)g_tty_cols};
        ioctl(slave, TIOCSWINSZ, &ws);
    }
    int saved_out = dup(1), saved_err = dup(2);
    dup2(tty ? slave : fileno(out), 1);
    dup2(fileno(err), 2);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    run_result r = {.rc = us_cli_main(argc, argv)};
    clock_gettime(CLOCK_MONOTONIC, &t1);
    fflush(stdout);
    fflush(stderr);
    dup2(saved_out, 1);
    dup2(saved_err, 2);
    close(saved_out);
    close(saved_err);
    if (tty) {
        /* The output is small enough to sit in the terminal's buffer until now. */
        close(slave);
        char buf[8192];
        size_t got = 0;
        struct pollfd pfd = {.fd = master, .events = POLLIN};
        while (got < sizeof buf - 1 && poll(&pfd, 1, 100) > 0) {
            ssize_t n = read(master, buf + got, sizeof buf - 1 - got);
            if (n <= 0)
                break;
            got += (size_t)n;
        }
        close(master);
        fwrite(buf, 1, got, out);
    }
    r.out = slurp(out);
    r.err = slurp(err);
    r.ms = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
    return r;
}

static run_result run_cli(const char *arg, ...)
{
    va_list ap;
    va_start(ap, arg);
    run_result r = run_cliv(false, arg, ap);
    va_end(ap);
    return r;
}

static run_result run_cli_tty(const char *arg, ...)
{
    va_list ap;
    va_start(ap, arg);
    run_result r = run_cliv(true, arg, ap);
    va_end(ap);
    return r;
}

static void run_free(run_result *r)
{
    free(r->out);
    free(r->err);
}

/* Does `text` have a line whose whitespace-separated words are exactly `words`? */
static bool has_row(const char *text, const char *words)
{
    char *copy = strdup(text);
    bool found = false;
    for (char *save = NULL, *line = strtok_r(copy, "\n", &save); line && !found;
         line = strtok_r(NULL, "\n", &save)) {
        char a[256] = "", b[256] = "";
        const char *p = line;
        while (*p) { /* collapse runs of spaces */
            if (*p == ' ' && (p[1] == ' ' || strlen(a) == 0)) {
                p++;
                continue;
            }
            strncat(a, p++, 1);
        }
        size_t n = strlen(a);
        while (n > 0 && a[n - 1] == ' ')
            a[--n] = '\0';
        snprintf(b, sizeof b, "%s", words);
        found = strcmp(a, b) == 0;
    }
    free(copy);
    return found;
}

/* Is there a line whose words (runs of spaces collapsed) start with `head` and end with
 * `tail`? */
static bool has_row_like(const char *text, const char *head, const char *tail)
{
    char *copy = strdup(text);
    bool found = false;
    for (char *save = NULL, *line = strtok_r(copy, "\n", &save); line && !found;
         line = strtok_r(NULL, "\n", &save)) {
        char a[1024] = "";
        size_t n = 0;
        for (const char *p = line; *p && n + 1 < sizeof a; p++)
            if (*p != ' ' || (n > 0 && a[n - 1] != ' '))
                a[n++] = *p;
        while (n > 0 && a[n - 1] == ' ')
            n--;
        a[n] = '\0';
        found = strncmp(a, head, strlen(head)) == 0 && n >= strlen(tail) &&
                strcmp(a + n - strlen(tail), tail) == 0;
    }
    free(copy);
    return found;
}

static char *write_temp(const char *dir_template_out, const char *name, const char *content)
{
    char *path = malloc(512);
    snprintf(path, 512, "%s/%s", dir_template_out, name);
    assert_int_equal(ut_write_file(path, content), 0);
    return path;
}

/* ---- tests ---- */

static void test_status_table(void **state)
{
    (void)state;
    agent *a = agent_start();
    agent_run(a);
    run_result r = run_cli("--api", a->addr, "status", NULL);
    agent_stop(a);
    assert_int_equal(r.rc, 0);
    assert_string_equal(r.err, "");
    assert_non_null(strstr(r.out, "cluster demo  leader n1  term 4  quorum yes\n"));
    assert_true(has_row(r.out, "NAME ADDRESS STATE VOTER"));
    assert_true(has_row(r.out, "n1 (leader) 127.0.0.1:7101 alive yes"));
    assert_true(has_row(r.out, "n2 127.0.0.1:7102 suspect yes"));
    assert_true(has_row(r.out, "n3 127.0.0.1:7103 dead no"));
    assert_true(has_row(r.out, "SERVICE ACTIVE HEALTH EPOCH STANDBYS LAST CHANGE"));
    /* An agent that says nothing of health: a dash. */
    assert_true(has_row(r.out, "web n2 - 7 n1, n3 (failed) switchover requested by operator"));
    assert_null(strchr(r.out, '\033')); /* not a terminal: no colour */
    /* Columns line up: STATE starts at the same offset in the header and in the rows. */
    const char *hdr = strstr(r.out, "NAME");
    const char *row = strstr(r.out, "\nn2 ") + 1;
    assert_int_equal(strstr(hdr, "STATE") - hdr, strstr(row, "suspect") - row);
    run_free(&r);
    free(a);
}

/* By default the leader's view (?consistent=1); --local the asked agent's own, whose staleness is
 * the line right after the cluster's. */
static void test_status_consistent_or_local(void **state)
{
    (void)state;
    agent *a = agent_start();
    a->stale = true;
    agent_run(a);
    run_result lead = run_cli("--api", a->addr, "status", NULL);
    char seen_default[8];
    memcpy(seen_default, a->last_consistent, sizeof seen_default);
    run_result own = run_cli("--api", a->addr, "status", "--local", NULL);
    char seen_local[8];
    memcpy(seen_local, a->last_consistent, sizeof seen_local);
    run_result misuse = run_cli("--api", a->addr, "events", "--local", NULL);
    agent_stop(a);
    assert_string_equal(seen_default, "1");
    assert_int_equal(lead.rc, 0);
    assert_null(strstr(lead.out, "stale"));
    assert_string_equal(seen_local, "-");
    assert_int_equal(own.rc, 0);
    assert_non_null(strstr(own.out, "cluster demo  leader n1  term 4  quorum yes\n"
                                    "state of n3 may be stale: not caught up with leader n1: "
                                    "applied index 5 of its commit index 9\n"));
    assert_int_equal(misuse.rc, 2);
    assert_non_null(strstr(misuse.err, "--local only applies to status"));
    run_free(&lead);
    run_free(&own);
    run_free(&misuse);
    free(a);
}

static void test_status_colour(void **state)
{
    (void)state;
    agent *a = agent_start();
    agent_run(a);
    unsetenv("NO_COLOR");
    run_result coloured = run_cli_tty("--api", a->addr, "status", NULL);
    setenv("NO_COLOR", "1", 1);
    run_result plain = run_cli_tty("--api", a->addr, "status", NULL);
    unsetenv("NO_COLOR");
    agent_stop(a);
    assert_int_equal(coloured.rc, 0);
    assert_non_null(strstr(coloured.out, "\033[32malive\033[0m"));
    assert_non_null(strstr(coloured.out, "\033[33msuspect\033[0m"));
    assert_int_equal(plain.rc, 0);
    assert_non_null(strstr(plain.out, "suspect"));
    assert_null(strchr(plain.out, '\033'));
    run_free(&coloured);
    run_free(&plain);
    free(a);
}

static void test_status_json_and_env(void **state)
{
    (void)state;
    agent *a = agent_start();
    agent_run(a);
    setenv("UNDERSTUDY_API", a->addr, 1);
    run_result r = run_cli("status", "--json", NULL); /* options after the command */
    unsetenv("UNDERSTUDY_API");
    agent_stop(a);
    assert_int_equal(r.rc, 0);
    json_error_t e;
    json_t *got = json_loads(r.out, 0, &e);
    assert_non_null(got);
    json_t *want = status_json(a);
    assert_true(json_equal(got, want));
    json_decref(got);
    json_decref(want);
    /* Passed through as the agent sent it: indented, ending in one newline. */
    size_t n = strlen(r.out);
    assert_true(n > 2 && r.out[n - 1] == '\n' && r.out[n - 2] != '\n');
    assert_non_null(strstr(r.out, "\n  \"cluster\": {"));
    run_free(&r);
    free(a);
}

static void test_apply(void **state)
{
    (void)state;
    char dir[] = "/tmp/test_cli.XXXXXX";
    assert_non_null(mkdtemp(dir));
    const char *good_text = "[service web]\nrun = python3 -m http.server 8080\n";
    char *good = write_temp(dir, "services.ini", good_text);
    char *bad = write_temp(dir, "bad.ini", "[service bad]\nrun =\n");
    agent *a = agent_start();
    agent_run(a);
    run_result ok = run_cli("apply", good, "--api", a->addr, NULL);
    run_result ko = run_cli("--api", a->addr, "apply", bad, NULL);
    char missing[600];
    snprintf(missing, sizeof missing, "%s/nope.ini", dir);
    run_result unreadable = run_cli("--api", a->addr, "apply", missing, NULL);
    agent_stop(a);

    assert_int_equal(ok.rc, 0);
    assert_string_equal(ok.out, "applied 2 service(s)\nremoved 1 service(s): old\n");
    assert_int_equal(ko.rc, 1);
    assert_string_equal(ko.out, "");
    assert_non_null(strstr(ko.err, "\nservices.ini:2: run: missing value\n"));
    assert_non_null(
        strstr(ko.err, "\nservices.ini:5: standbys: expected a number >= 0, got \"x\"\n"));
    assert_int_equal(unreadable.rc, 2);
    assert_non_null(strstr(unreadable.err, missing));
    assert_non_null(strstr(unreadable.err, "No such file or directory"));
    /* The file's text went as the body, its base name in the query; the bad file came last. */
    assert_int_equal(a->n_posts, 2);
    assert_string_equal(a->last_target, "/v1/services");
    assert_string_equal(a->last_file, "bad.ini");
    assert_string_equal(a->last_body, "[service bad]\nrun =\n");
    (void)good_text;

    run_free(&ok);
    run_free(&ko);
    run_free(&unreadable);
    unlink(good);
    unlink(bad);
    rmdir(dir);
    free(good);
    free(bad);
    free(a);
}

static void test_apply_body_and_redirect(void **state)
{
    (void)state;
    char dir[] = "/tmp/test_cli.XXXXXX";
    assert_non_null(mkdtemp(dir));
    const char *text = "[service web]\nrun = sleep 100\n";
    char *file = write_temp(dir, "web.ini", text);
    agent *follower = agent_start(), *leader = agent_start();
    snprintf(follower->redirect_to, sizeof follower->redirect_to, "%s", leader->addr);
    agent_run(follower);
    agent_run(leader);
    run_result r = run_cli("--api", follower->addr, "apply", file, NULL);
    agent_stop(follower);
    agent_stop(leader);
    assert_int_equal(r.rc, 0);
    assert_string_equal(r.out, "applied 2 service(s)\nremoved 1 service(s): old\n");
    assert_int_equal(follower->n_posts, 1);
    assert_int_equal(leader->n_posts, 1);
    assert_string_equal(leader->last_body, text);
    assert_string_equal(leader->last_file, "web.ini");
    run_free(&r);
    unlink(file);
    rmdir(dir);
    free(file);
    free(follower);
    free(leader);
}

static void test_redirect_to_dead_leader(void **state)
{
    (void)state;
    /* The leader named by the 421 is gone; the asked agent later becomes the leader itself. */
    agent *a = agent_start();
    snprintf(a->redirect_to, sizeof a->redirect_to, "127.0.0.1:%d", ut_free_port());
    a->redirects = 2;
    agent_run(a);
    run_result r = run_cli("--api", a->addr, "switchover", "web", NULL);
    agent_stop(a);
    assert_int_equal(r.rc, 0);
    assert_string_equal(r.out, "web: n2 -> n1 (epoch 8)\n");
    assert_int_equal(a->n_posts, 3);
    run_free(&r);
    free(a);
}

static void test_redirect_loop_gives_up(void **state)
{
    (void)state;
    agent *a = agent_start(), *b = agent_start();
    snprintf(a->redirect_to, sizeof a->redirect_to, "%s", b->addr);
    snprintf(b->redirect_to, sizeof b->redirect_to, "%s", a->addr);
    agent_run(a);
    agent_run(b);
    run_result r = run_cli("--api", a->addr, "switchover", "web", NULL);
    agent_stop(a);
    agent_stop(b);
    assert_int_equal(r.rc, 1);
    assert_non_null(strstr(r.err, "understudy: not the leader"));
    assert_int_equal(a->n_posts + b->n_posts, 4); /* the first try and 3 redirects */
    run_free(&r);
    free(a);
    free(b);
}

static void test_no_leader_retry(void **state)
{
    (void)state;
    agent *a = agent_start();
    a->no_leader = 3;
    agent_run(a);
    run_result r = run_cli("--api", a->addr, "node", "remove", "n3", NULL);
    agent_stop(a);
    assert_int_equal(r.rc, 0);
    assert_string_equal(r.out, "node n3 removed\n");
    assert_int_equal(a->n_posts, 4);
    assert_string_equal(a->last_target, "/v1/nodes/n3/remove");
    assert_true(r.ms >= 3 * 200);
    run_free(&r);
    free(a);
}

static void test_switchover(void **state)
{
    (void)state;
    agent *a = agent_start();
    agent_run(a);
    run_result r = run_cli("--api", a->addr, "switchover", "web", "--to", "n1", NULL);
    assert_string_equal(a->last_force, "");
    run_result forced = run_cli("--api", a->addr, "switchover", "web", "--force", NULL);
    assert_string_equal(a->last_force, "1");
    run_result unknown = run_cli("--api", a->addr, "switchover", "nope", NULL);
    agent_stop(a);
    assert_int_equal(forced.rc, 0);
    run_free(&forced);
    assert_int_equal(r.rc, 0);
    assert_string_equal(r.out, "web: n2 -> n1 (epoch 8)\n");
    assert_true(r.ms >= 300); /* it waited for the change */
    assert_int_equal(unknown.rc, 1);
    assert_string_equal(unknown.err, "understudy: no such service: nope\n");
    assert_string_equal(a->last_target, "/v1/services/nope/switchover");
    run_free(&r);
    run_free(&unknown);
    free(a);
}

static void test_switchover_json(void **state)
{
    (void)state;
    agent *a = agent_start();
    agent_run(a);
    run_result r = run_cli("--json", "--api", a->addr, "switchover", "web", NULL);
    agent_stop(a);
    assert_int_equal(r.rc, 0);
    json_t *j = json_loads(r.out, 0, NULL);
    assert_non_null(j);
    assert_string_equal(json_string_value(json_object_get(j, "to")), "n1");
    assert_int_equal(json_integer_value(json_object_get(j, "epoch")), 8);
    assert_string_equal(a->last_to, "");
    json_decref(j);
    run_free(&r);
    free(a);
}

static void test_status_selfheal(void **state)
{
    (void)state;
    agent *a = agent_start();
    a->selfheal = true;
    a->paused = true;
    agent_run(a);
    run_result r = run_cli("--api", a->addr, "status", NULL);
    agent_stop(a);
    assert_int_equal(r.rc, 0);
    assert_string_equal(r.err, "");
    /* Every line the basic status has is still there; flags go into existing cells. */
    assert_non_null(strstr(r.out, "cluster demo  leader n1  term 4  quorum yes\n"));
    assert_true(has_row(r.out, "n1 (leader) 127.0.0.1:7101 alive yes"));
    assert_true(has_row(r.out, "n2 127.0.0.1:7102 suspect, drained yes"));
    assert_true(has_row(
        r.out, "web (paused) n2 healthy 7 n1, n3 (failed) switchover requested by operator"));
    assert_non_null(strstr(r.out, "web: restart in place on n2 at "));
    assert_true(has_row(r.out, "SERVICE NODE ROLE HEALTH CHECK PID NOTE"));
    assert_true(has_row(r.out, "web n2 active healthy 3ms 4242 -"));
    assert_true(has_row(r.out, "web n1 standby unknown - - restarted 2x: exited with status 1"));
    assert_true(has_row(r.out, "web n3 failed unhealthy 1ms - check http://127.0.0.1:8080/healthz "
                               "failed 3/3: connection refused"));
    assert_true(has_row(r.out, "SERVICE NODE FAILURES LAST BANNED"));
    assert_true(
        has_row_like(r.out, "web n3 3 ", "s left)")); /* "LAST until HH:MM:SS (3600s left)" */
    assert_non_null(strstr(r.out, "  until "));
    assert_true(has_row_like(r.out, "web n1 1 ", " no"));
    run_free(&r);
    free(a);
}

static void test_status_without_failures(void **state)
{
    (void)state;
    /* An older agent (no health fields): dashes, no failures section. */
    agent *a = agent_start();
    agent_run(a);
    run_result r = run_cli("--api", a->addr, "status", NULL);
    agent_stop(a);
    assert_int_equal(r.rc, 0);
    assert_true(has_row(r.out, "web n2 active - - 4242 -"));
    assert_null(strstr(r.out, "FAILURES"));
    assert_null(strstr(r.out, "restart in place"));
    run_free(&r);
    free(a);
}

static int count_lines(const char *s)
{
    int n = 0;
    for (; *s; s++)
        n += *s == '\n';
    return n;
}

static void test_events_table(void **state)
{
    (void)state;
    agent *a = agent_start();
    a->n_events = 9;
    agent_run(a);
    run_result all = run_cli("--api", a->addr, "events", NULL);
    run_result web =
        run_cli("--api", a->addr, "events", "--service", "web", "--node=n1", "--limit", "2", NULL);
    agent_stop(a);
    assert_int_equal(all.rc, 0);
    assert_string_equal(all.err, "");
    assert_int_equal(count_lines(all.out), 10); /* header and 9 events */
    assert_true(has_row(all.out, "TIME SERVICE NODE KIND FROM -> TO CAUSE"));
    /* Local time with milliseconds, then the event; an empty cause is a dash. */
    const char *line = strstr(all.out, "\n") + 1;
    assert_int_equal(line[4], '-');
    assert_int_equal(line[19], '.');
    assert_true(
        has_row_like(all.out, "20", " web n1 role standby -> active instance on n2 failed"));
    assert_true(has_row_like(all.out, "20", " db n2 health healthy -> unhealthy -"));
    /* Oldest first: event 1 (web) before event 2 (db). */
    assert_true(strstr(all.out, "  web ") < strstr(all.out, "  db "));

    /* Filters travel to the agent; --limit keeps the newest. */
    assert_int_equal(web.rc, 0);
    assert_int_equal(count_lines(web.out), 3);
    assert_string_equal(a->last_service, "web");
    assert_string_equal(a->last_node, "n1");
    assert_string_equal(a->last_limit, "256");
    assert_string_equal(a->last_after, "0");
    run_free(&all);
    run_free(&web);
    free(a);
}

static void test_events_json(void **state)
{
    (void)state;
    agent *a = agent_start();
    a->n_events = 7;
    agent_run(a);
    run_result r = run_cli("--api", a->addr, "--json", "events", "--limit", "3", NULL);
    agent_stop(a);
    assert_int_equal(r.rc, 0);
    json_t *j = json_loads(r.out, 0, NULL);
    assert_true(json_is_array(j));
    assert_int_equal(json_array_size(j), 3);
    for (int i = 0; i < 3; i++) {
        json_t *want = event_json(5 + i);
        assert_true(json_equal(json_array_get(j, (size_t)i), want));
        json_decref(want);
    }
    json_decref(j);
    run_free(&r);
    free(a);
}

static void test_events_follow(void **state)
{
    (void)state;
    agent *a = agent_start();
    a->n_events = 2;
    a->grow = 1;
    a->signal_after = 6; /* the initial fetch and 5 polls, each finding one new event */
    agent_run(a);
    run_result r = run_cli("--api", a->addr, "--json", "events", "--follow", NULL);
    agent_stop(a);
    /* SIGTERM ends following with success, and the default disposition is back. */
    assert_int_equal(r.rc, 0);
    assert_string_equal(r.err, "");
    struct sigaction sa;
    sigaction(SIGTERM, NULL, &sa);
    assert_true(sa.sa_handler == SIG_DFL);
    /* One JSON object per line, every event once, in order. */
    int n = 0;
    for (char *save = NULL, *l = strtok_r(r.out, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
        json_t *e = json_loads(l, 0, NULL);
        assert_non_null(e);
        assert_int_equal(json_integer_value(json_object_get(e, "seq")), ++n);
        json_decref(e);
    }
    assert_true(n >= 6 && n <= 7);
    /* It asked for what came after the last event it had. */
    assert_true(strncmp(a->seen_after, "0 2 3 4 5 6", 11) == 0);
    assert_true(r.ms >= 5 * 250 - 50);
    run_free(&r);
    free(a);
}

static void test_events_follow_agent_lost(void **state)
{
    (void)state;
    agent *a = agent_start();
    a->n_events = 1;
    a->die_after = 2;
    agent_run(a);
    run_result r = run_cli("--api", a->addr, "events", "--follow", NULL);
    agent_stop(a);
    assert_int_equal(r.rc, 1);
    assert_non_null(
        strstr(r.err, "understudy: stopped following after 5 s: cannot reach the agent at"));
    assert_int_equal(count_lines(r.err), 1); /* quiet while retrying */
    assert_int_equal(count_lines(r.out), 2);
    assert_true(r.ms >= 5000 && r.ms < 9000);
    run_free(&r);
    free(a);
}

static void test_pause_resume_reset(void **state)
{
    (void)state;
    agent *a = agent_start();
    agent_run(a);
    run_result p1 = run_cli("--api", a->addr, "service", "pause", "web", NULL);
    run_result p2 = run_cli("--api", a->addr, "service", "pause", "web", NULL);
    run_result r1 = run_cli("--api", a->addr, "service", "resume", "web", NULL);
    run_result r2 = run_cli("--api", a->addr, "--json", "service", "resume", "web", NULL);
    run_result unknown = run_cli("--api", a->addr, "service", "pause", "nope", NULL);
    run_result all = run_cli("--api", a->addr, "reset", "web", NULL);
    run_result one = run_cli("--api", a->addr, "reset", "web", "--node", "n3", NULL);
    agent_stop(a);
    assert_int_equal(p1.rc, 0);
    assert_string_equal(p1.out, "web: paused\n");
    assert_string_equal(p2.out, "web: already paused\n");
    assert_string_equal(r1.out, "web: resumed\n");
    assert_int_equal(r2.rc, 0);
    json_t *j = json_loads(r2.out, 0, NULL);
    assert_true(json_is_false(json_object_get(j, "paused")));
    json_decref(j);
    assert_int_equal(unknown.rc, 1);
    assert_string_equal(unknown.err, "understudy: no such service: nope\n");
    assert_int_equal(all.rc, 0);
    assert_string_equal(all.out, "web: failures cleared on every node\n");
    assert_int_equal(one.rc, 0);
    assert_string_equal(one.out, "web: failures on n3 cleared\n");
    assert_string_equal(a->last_target, "/v1/services/web/reset");
    assert_string_equal(a->last_node, "n3");
    assert_string_equal(a->last_by, "CLI");
    run_free(&p1);
    run_free(&p2);
    run_free(&r1);
    run_free(&r2);
    run_free(&unknown);
    run_free(&all);
    run_free(&one);
    free(a);
}

static void test_drain(void **state)
{
    (void)state;
    agent *follower = agent_start(), *leader = agent_start();
    snprintf(follower->redirect_to, sizeof follower->redirect_to, "%s", leader->addr);
    agent_run(follower);
    agent_run(leader);
    run_result d1 = run_cli("--api", follower->addr, "node", "drain", "n2", NULL);
    run_result d2 = run_cli("--api", follower->addr, "node", "drain", "n2", NULL);
    run_result u1 = run_cli("--api", follower->addr, "node", "undrain", "n2", NULL);
    run_result u2 = run_cli("--api", follower->addr, "node", "undrain", "n2", NULL);
    run_result unknown = run_cli("--api", follower->addr, "node", "drain", "n9", NULL);
    agent_stop(follower);
    agent_stop(leader);
    assert_int_equal(d1.rc, 0);
    assert_string_equal(d1.out, "n2: drained (active roles move off it by switchover)\n");
    assert_string_equal(d2.out, "n2: already drained\n");
    assert_string_equal(u1.out, "n2: undrained (may take roles again)\n");
    assert_string_equal(u2.out, "n2: not drained (nothing to do)\n");
    assert_int_equal(unknown.rc, 1);
    assert_string_equal(unknown.err, "understudy: unknown node 'n9'\n");
    /* Redirected to the leader, which got them all, asked by the CLI. */
    assert_int_equal(leader->n_posts, 5);
    assert_string_equal(leader->last_by, "CLI");
    assert_string_equal(leader->last_target, "/v1/nodes/n9/drain");
    run_free(&d1);
    run_free(&d2);
    run_free(&u1);
    run_free(&u2);
    run_free(&unknown);
    free(follower);
    free(leader);
}

static void test_unreachable(void **state)
{
    (void)state;
    char addr[64], want[256];
    snprintf(addr, sizeof addr, "127.0.0.1:%d", ut_free_port());
    snprintf(want, sizeof want,
             "understudy: cannot reach the agent at %s (Connection refused); is `understudy "
             "agent` running?\n",
             addr);
    run_result r = run_cli("--api", addr, "status", NULL);
    assert_int_equal(r.rc, 1);
    assert_string_equal(r.err, want);
    assert_string_equal(r.out, "");
    run_free(&r);

    r = run_cli("--api", addr, "switchover", "web", NULL);
    assert_int_equal(r.rc, 1);
    assert_string_equal(r.err, want);
    run_free(&r);

    /* The client's version is known without an agent. */
    r = run_cli("--api", addr, "version", NULL);
    assert_int_equal(r.rc, 0);
    assert_string_equal(r.out, "understudy " US_VERSION "\n");
    run_free(&r);
}

static void test_version(void **state)
{
    (void)state;
    agent *a = agent_start();
    agent_run(a);
    run_result r = run_cli("version", "--api", a->addr, NULL);
    agent_stop(a);
    char want[128];
    snprintf(want, sizeof want, "understudy %s\nagent 0.1.0 at %s\n", US_VERSION, a->addr);
    assert_int_equal(r.rc, 0);
    assert_string_equal(r.out, want);
    run_free(&r);
    free(a);
}

static void expect_usage(run_result r, const char *needle)
{
    if (r.rc != 2 || !strstr(r.err, needle))
        fail_msg("expected exit 2 with \"%s\", got %d: %s", needle, r.rc, r.err);
    assert_string_equal(r.out, "");
    run_free(&r);
}

static void test_usage(void **state)
{
    (void)state;
    /* No agent is contacted for any of these. */
    const char *api = "127.0.0.1:1";
    expect_usage(run_cli(NULL), "usage: understudy");
    expect_usage(run_cli("--api", api, "frobnicate", NULL), "unknown command \"frobnicate\"");
    expect_usage(run_cli("--api", api, "apply", NULL), "missing FILE");
    expect_usage(run_cli("--api", api, "switchover", NULL), "missing SERVICE");
    expect_usage(run_cli("--api", api, "switchover", "web", "--to", NULL), "--to needs");
    expect_usage(run_cli("--api", api, "reset", "web", "--force", NULL),
                 "--force only applies to switchover");
    expect_usage(run_cli("--api", api, "node", NULL), "missing subcommand");
    expect_usage(run_cli("--api", api, "node", "remove", NULL), "missing NAME");
    expect_usage(run_cli("--api", api, "node", "rename", "x", NULL), "unknown node subcommand");
    expect_usage(run_cli("--api", api, "status", "extra", NULL), "unexpected argument");
    expect_usage(run_cli("--bogus", "status", NULL), "unknown option --bogus");
    expect_usage(run_cli("status", "--api", NULL), "--api needs a value");
    expect_usage(run_cli("--api", "nope", "status", NULL), "invalid agent address \"nope\"");
    expect_usage(run_cli("--api", api, "status", "--to", "n1", NULL), "--to only applies");
    /* events */
    expect_usage(run_cli("--api", api, "events", "extra", NULL), "unexpected argument \"extra\"");
    expect_usage(run_cli("--api", api, "events", "--limit", "0", NULL),
                 "--limit needs a number from 1 to 256, got \"0\"");
    expect_usage(run_cli("--api", api, "events", "--limit", "257", NULL), "--limit needs");
    expect_usage(run_cli("--api", api, "events", "--limit=x", NULL), "--limit needs");
    expect_usage(run_cli("--api", api, "events", "--limit", NULL), "--limit needs");
    expect_usage(run_cli("--api", api, "events", "--service", NULL), "--service needs");
    expect_usage(run_cli("--api", api, "events", "--node=", NULL), "--node needs");
    expect_usage(run_cli("--api", api, "status", "--follow", NULL), "--follow only applies");
    expect_usage(run_cli("--api", api, "status", "--service", "web", NULL),
                 "--service only applies");
    expect_usage(run_cli("--api", api, "switchover", "web", "--limit", "3", NULL),
                 "--limit only applies");
    expect_usage(run_cli("--api", api, "status", "--node", "n1", NULL),
                 "--node only applies to events and reset");
    /* reset */
    expect_usage(run_cli("--api", api, "reset", NULL), "missing SERVICE");
    expect_usage(run_cli("--api", api, "reset", "web", "db", NULL), "unexpected argument \"db\"");
    expect_usage(run_cli("--api", api, "reset", "web", "--to", "n1", NULL), "--to only applies");
    /* service */
    expect_usage(run_cli("--api", api, "service", NULL), "missing subcommand (pause, resume)");
    expect_usage(run_cli("--api", api, "service", "stop", "web", NULL),
                 "unknown service subcommand \"stop\"");
    expect_usage(run_cli("--api", api, "service", "pause", NULL), "missing NAME");
    expect_usage(run_cli("--api", api, "service", "resume", "a", "b", NULL),
                 "unexpected argument \"b\"");
    /* node */
    expect_usage(run_cli("--api", api, "node", "drain", NULL), "missing NAME");
    expect_usage(run_cli("--api", api, "node", "undrain", "n1", "n2", NULL),
                 "unexpected argument \"n2\"");
    expect_usage(run_cli("--api", api, "node", "drain", "n1", "--node", "n2", NULL),
                 "--node only applies");

    run_result r = run_cli("help", NULL);
    assert_int_equal(r.rc, 0);
    assert_non_null(
        strstr(r.out, "usage: understudy [--api HOST:PORT] [--token-file PATH] [--json] COMMAND"));
    assert_non_null(strstr(r.out, "switchover SERVICE [--to NODE]"));
    run_free(&r);
    r = run_cli("--help", NULL);
    assert_int_equal(r.rc, 0);
    assert_non_null(strstr(r.out, "usage: understudy"));
    run_free(&r);
    r = run_cli("switchover", "--help", NULL);
    assert_int_equal(r.rc, 0);
    assert_non_null(strstr(r.out, "usage: understudy switchover SERVICE [--to NODE]"));
    run_free(&r);
    /* Every command is in the overview and has its own help. */
    r = run_cli("help", NULL);
    const char *overview[] = {"events [--service S] [--node N] [--limit N] [--follow]",
                              "service pause|resume NAME", "reset SERVICE [--node NODE]",
                              "node drain|undrain NAME", "node remove NAME"};
    for (size_t i = 0; i < sizeof overview / sizeof overview[0]; i++)
        if (!strstr(r.out, overview[i]))
            fail_msg("help lacks \"%s\"", overview[i]);
    run_free(&r);
    const char *helps[][2] = {
        {"events", "usage: understudy events [--service S] [--node N] [--limit N] [--follow]"},
        {"reset", "usage: understudy reset SERVICE [--node NODE]"},
        {"service", "usage: understudy service pause|resume NAME"},
        {"node", "usage: understudy node remove|drain|undrain NAME"},
    };
    for (size_t i = 0; i < sizeof helps / sizeof helps[0]; i++) {
        r = run_cli("help", helps[i][0], NULL);
        assert_int_equal(r.rc, 0);
        if (!strstr(r.out, helps[i][1]))
            fail_msg("help %s lacks \"%s\": %s", helps[i][0], helps[i][1], r.out);
        run_free(&r);
    }
}

/* ---- check-config (local: no agent is asked, so the --api given is never even checked) ---- */

static void test_check_config_services(void **state)
{
    (void)state;
    char dir[] = "/tmp/test_cli.XXXXXX";
    assert_non_null(mkdtemp(dir));
    char *good = write_temp(dir, "services.ini",
                            "[service web]\nrun = exec ./web\nnotify = ./hook.sh\n"
                            "notify_timeout = 2s\n\n[service db]\nrun = exec ./db\n");
    char *bad = write_temp(dir, "bad.ini",
                           "[service web]\nrun =\nnotify_timeout = 1s\n"
                           "[service db]\nrun = x\nstandby = warm\n");
    run_result r = run_cli("--api", "nope", "check-config", good, NULL);
    char want[1024];
    snprintf(want, sizeof want, "%s: ok (services file: 2 services: web, db)\n", good);
    assert_int_equal(r.rc, 0);
    assert_string_equal(r.out, want);
    assert_string_equal(r.err, "");
    run_free(&r);

    r = run_cli("check-config", bad, NULL);
    assert_int_equal(r.rc, 2);
    assert_string_equal(r.out, "");
    /* Every problem, as FILE:LINE: key, expectation (the same text apply and agent print). */
    snprintf(want, sizeof want,
             "%s:2: key 'run' in [service web]: expected a shell command, got ''\n"
             "%s:3: key 'notify_timeout' in [service web]: only meaningful with 'notify' (this "
             "service has no 'notify' key)\n"
             "%s:6: key 'standby' in [service db]: expected 'cold' or 'hot', got 'warm'\n"
             "understudy: %s: not valid (services file, 3 problems)\n",
             bad, bad, bad, bad);
    assert_string_equal(r.err, want);
    run_free(&r);

    r = run_cli("check-config", good, "--json", NULL);
    assert_int_equal(r.rc, 0);
    json_t *j = json_loads(r.out, 0, NULL);
    assert_non_null(j);
    json_t *want_j =
        json_pack("{s:s, s:s, s:b, s:[], s:[], s:[s, s]}", "file", good, "kind", "services", "ok",
                  1, "problems", "warnings", "services", "web", "db");
    assert_true(json_equal(j, want_j));
    json_decref(j);
    json_decref(want_j);
    run_free(&r);

    r = run_cli("check-config", "--json", bad, NULL);
    assert_int_equal(r.rc, 2);
    j = json_loads(r.out, 0, NULL);
    assert_non_null(j);
    assert_string_equal(json_string_value(json_object_get(j, "kind")), "services");
    assert_true(json_is_false(json_object_get(j, "ok")));
    assert_int_equal(json_array_size(json_object_get(j, "problems")), 3);
    assert_null(json_object_get(j, "services"));
    snprintf(want, sizeof want,
             "%s:6: key 'standby' in [service db]: expected 'cold' or 'hot', "
             "got 'warm'",
             bad);
    assert_string_equal(json_string_value(json_array_get(json_object_get(j, "problems"), 2)), want);
    json_decref(j);
    run_free(&r);

    /* Neither kind, unreadable, and usage errors. */
    char *neither = write_temp(dir, "neither.ini", "run = x\n[services]\n");
    r = run_cli("check-config", neither, NULL);
    assert_int_equal(r.rc, 2);
    assert_non_null(strstr(r.err, "expected a node config ([node] and [cluster] sections) or a "
                                  "services file ([service NAME] sections), found neither"));
    run_free(&r);
    r = run_cli("check-config", neither, "--json", NULL);
    assert_int_equal(r.rc, 2);
    j = json_loads(r.out, 0, NULL);
    assert_string_equal(json_string_value(json_object_get(j, "kind")), "unknown");
    json_decref(j);
    run_free(&r);
    snprintf(want, sizeof want, "%s/missing.ini", dir);
    r = run_cli("check-config", want, NULL);
    assert_int_equal(r.rc, 2);
    assert_non_null(strstr(r.err, "missing.ini: cannot read: No such file or directory"));
    run_free(&r);
    expect_usage(run_cli("check-config", NULL), "missing FILE");
    expect_usage(run_cli("check-config", good, bad, NULL), "unexpected argument");
    expect_usage(run_cli("check-config", good, "--follow", NULL), "--follow only applies");

    unlink(good);
    unlink(bad);
    unlink(neither);
    rmdir(dir);
    free(good);
    free(bad);
    free(neither);
}

static void test_check_config_node(void **state)
{
    (void)state;
    char dir[] = "/tmp/test_cli.XXXXXX";
    assert_non_null(mkdtemp(dir));
    char text[2048], data[600], key[600], token[600], why[256];
    snprintf(data, sizeof data, "%s/data/n1", dir);
    snprintf(key, sizeof key, "%s/cluster.key", dir);
    snprintf(token, sizeof token, "%s/api.token", dir);
    assert_int_equal(us_keygen(key, false, why, sizeof why), 0);
    assert_int_equal(us_keygen(token, true, why, sizeof why), 0);
    snprintf(text, sizeof text,
             "# a node config\n[node]\nname = n1\naddress = 127.0.0.1:7101\ndata_dir = %s\n\n"
             "[cluster]\nname = demo\nmembers = n1=127.0.0.1:7101 n2=127.0.0.1:7102\n"
             "key_file = %s\n[node]\napi_token_file = %s\n",
             data, key, token);
    char *good = write_temp(dir, "node.conf", text);
    snprintf(text, sizeof text,
             "[node]\nname = n3\naddress = 127.0.0.1:7103\ndata_dir = /tmp\napi_token_file = %s\n"
             "[cluster]\nname = demo\njoin = 127.0.0.1:7101\nkey_file = %s\n",
             token, key);
    char *join = write_temp(dir, "join.conf", text);
    char *bad = write_temp(dir, "bad.conf",
                           "[node]\nname = N1\naddress = 0.0.0.0:7101\nbogus = 1\n"
                           "[cluster]\nname = demo\n");

    run_result r = run_cli("check-config", good, NULL);
    char want[2048];
    snprintf(want, sizeof want, "%s: ok (node config: node n1 of cluster demo, 2 members)\n", good);
    assert_int_equal(r.rc, 0);
    assert_string_equal(r.out, want);
    /* The missing data_dir is a warning, and check-config does not create it. */
    snprintf(want, sizeof want,
             "%s:5: key 'node.data_dir': warning: '%s' does not exist yet (the agent creates "
             "it)\n",
             good, data);
    assert_string_equal(r.err, want);
    struct stat st;
    snprintf(want, sizeof want, "%s/data", dir);
    assert_int_equal(stat(want, &st), -1);
    run_free(&r);

    r = run_cli("check-config", join, NULL);
    snprintf(want, sizeof want,
             "%s: ok (node config: node n3 of cluster demo, joins via 1 address)\n", join);
    assert_int_equal(r.rc, 0);
    assert_string_equal(r.out, want);
    assert_string_equal(r.err, "");
    run_free(&r);

    r = run_cli("check-config", good, "--json", NULL);
    assert_int_equal(r.rc, 0);
    json_t *j = json_loads(r.out, 0, NULL);
    assert_non_null(j);
    assert_string_equal(json_string_value(json_object_get(j, "kind")), "node");
    assert_true(json_is_true(json_object_get(j, "ok")));
    assert_int_equal(json_array_size(json_object_get(j, "warnings")), 1);
    json_t *node = json_object_get(j, "node");
    assert_string_equal(json_string_value(json_object_get(node, "name")), "n1");
    assert_string_equal(json_string_value(json_object_get(node, "api")), "127.0.0.1:7201");
    assert_string_equal(json_string_value(json_object_get(node, "data_dir")), data);
    assert_string_equal(json_string_value(json_object_get(node, "cluster")), "demo");
    assert_int_equal(json_array_size(json_object_get(node, "members")), 2);
    json_decref(j);
    run_free(&r);

    r = run_cli("check-config", bad, NULL);
    assert_int_equal(r.rc, 2);
    assert_string_equal(r.out, "");
    const char *lines[] = {
        ":2: key 'node.name': expected a name of [a-z0-9-], 1..63 characters",
        ":3: key 'node.address': expected IPv4:port",
        ":4: unknown key 'node.bogus'",
        ": missing key 'node.data_dir'",
        ": missing key 'cluster.members' or 'cluster.join'",
        ": missing key 'cluster.key_file' (expected the path of the cluster key file (create one "
        "with `understudy keygen FILE`))",
        ": missing key 'node.api_token_file'",
        ": not valid (node config, 7 problems)",
    };
    for (size_t i = 0; i < sizeof lines / sizeof lines[0]; i++) {
        snprintf(want, sizeof want, "%s%s", bad, lines[i]);
        if (!strstr(r.err, want))
            fail_msg("no \"%s\" in:\n%s", want, r.err);
    }
    run_free(&r);

    unlink(good);
    unlink(join);
    unlink(bad);
    unlink(key);
    unlink(token);
    rmdir(dir);
    free(good);
    free(join);
    free(bad);
}

/* ---- help, hints, colour ---- */

static void test_help_every_command(void **state)
{
    (void)state;
    const char *names[] = {"status", "events", "apply",   "check-config", "switchover", "service",
                           "reset",  "node",   "version", "agent",        "help"};
    run_result overview = run_cli("help", NULL);
    assert_int_equal(overview.rc, 0);
    for (const char *l = overview.out; *l;) {
        size_t n = strcspn(l, "\n");
        if (n > 80)
            fail_msg("the overview has a line of %zu columns: %.*s", n, (int)n, l);
        l += n + (l[n] != '\0');
    }
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        char want[128];
        snprintf(want, sizeof want, "\n  %s", names[i]);
        if (!strstr(overview.out, want))
            fail_msg("the overview lacks %s:\n%s", names[i], overview.out);
        run_result h = run_cli("help", names[i], NULL);
        run_result flag = run_cli(names[i], "--help", NULL);
        assert_int_equal(h.rc, 0);
        assert_string_equal(h.err, "");
        snprintf(want, sizeof want, "usage: understudy %s", names[i]);
        if (strncmp(h.out, want, strlen(want)) != 0)
            fail_msg("help %s does not start with \"%s\":\n%s", names[i], want, h.out);
        const char *parts[] = {"\nexamples:\n  understudy ", "\nexit status:\n  0  "};
        for (size_t k = 0; k < 2; k++)
            if (!strstr(h.out, parts[k]))
                fail_msg("help %s lacks \"%s\":\n%s", names[i], parts[k], h.out);
        /* Commands that ask an agent say how to choose it. */
        bool local = strcmp(names[i], "check-config") == 0 || strcmp(names[i], "agent") == 0 ||
                     strcmp(names[i], "help") == 0;
        if (!local && !strstr(h.out, "\noptions:\n") && !strstr(h.out, "--api HOST:PORT"))
            fail_msg("help %s lacks the options:\n%s", names[i], h.out);
        /* Every line fits in 80 columns. */
        for (const char *l = h.out; *l;) {
            size_t n = strcspn(l, "\n");
            if (n > 80)
                fail_msg("help %s has a line of %zu columns: %.*s", names[i], n, (int)n, l);
            l += n + (l[n] != '\0');
        }
        if (strcmp(names[i], "help") != 0) { /* "help --help" is help's own help too */
            assert_int_equal(flag.rc, 0);
            assert_string_equal(flag.out, h.out);
        }
        run_free(&h);
        run_free(&flag);
    }
    run_free(&overview);
    /* "help node drain" is node's help; --help works after a subcommand too. */
    run_result a = run_cli("help", "node", "drain", NULL);
    run_result b = run_cli("node", "drain", "n1", "--help", NULL);
    assert_int_equal(a.rc, 0);
    assert_int_equal(b.rc, 0);
    assert_non_null(strstr(a.out, "usage: understudy node remove|drain|undrain NAME"));
    assert_string_equal(a.out, b.out);
    run_free(&a);
    run_free(&b);
    expect_usage(run_cli("help", "frobnicate", NULL), "unknown command \"frobnicate\"");
    /* --help goes to stdout; a usage error's usage to stderr. */
    a = run_cli("-h", NULL);
    assert_int_equal(a.rc, 0);
    assert_non_null(strstr(a.out, "check-config FILE"));
    run_free(&a);
    a = run_cli(NULL);
    assert_int_equal(a.rc, 2);
    assert_string_equal(a.out, "");
    assert_non_null(strstr(a.err, "usage: understudy"));
    run_free(&a);
    /* The agent's help, as main() prints it. */
    char buf[4096];
    FILE *f = fmemopen(buf, sizeof buf, "w");
    assert_int_equal(us_cli_help("agent", f), 0);
    fclose(f);
    assert_non_null(strstr(buf, "usage: understudy agent --config FILE [--debug]"));
    assert_int_equal(us_cli_help("nope", stdout), -1);
}

/* The command table itself: every row is complete and consistent, so that run() can check a
 * command line against it, and the overview lists every command in the table's order. */
static void test_command_table(void **state)
{
    (void)state;
    assert_true(us_n_commands >= 12);
    char *overview = NULL;
    size_t olen = 0;
    FILE *o = open_memstream(&overview, &olen);
    assert_non_null(o);
    us_commands_overview(o);
    fclose(o);
    const char *at = overview;
    for (size_t i = 0; i < us_n_commands; i++) {
        const us_command *cmd = &us_commands[i];
        char want[64];
        snprintf(want, sizeof want, "understudy %s", cmd->name);
        assert_memory_equal(cmd->usage, want, strlen(want));
        assert_true(cmd->help && cmd->help[0] && cmd->exits && cmd->exits[0]);
        snprintf(want, sizeof want, "  %s ", cmd->name);
        assert_memory_equal(cmd->overview, want, strlen(want));
        const char *found = strstr(at, cmd->overview);
        assert_non_null(found); /* in the table's order */
        at = found + strlen(cmd->overview);
        assert_ptr_equal(us_command_find(cmd->name), cmd);
        assert_true(cmd->min_args >= 0 && cmd->min_args <= cmd->max_args);
        assert_true(cmd->max_args <= US_CMD_MAX_ARGS);
        if (cmd->min_args > 0)
            assert_non_null(cmd->arg_name);
        /* A handler, or subcommands that each have one; neither only for what main() runs. */
        bool client = cmd->run || cmd->subs;
        assert_false(cmd->run && cmd->subs);
        assert_int_equal(client, strcmp(cmd->name, "agent") != 0 &&
                                     strcmp(cmd->name, "keygen") != 0 &&
                                     strcmp(cmd->name, "recover") != 0);
        for (const us_subcommand *sub = cmd->subs; sub && sub->name; sub++)
            assert_non_null(sub->run);
    }
    free(overview);
    assert_null(us_command_find("nodes"));
    assert_string_equal(us_command_suggest("nodes"), "node");
    assert_null(us_command_suggest("xyzzy"));
}

static void test_did_you_mean(void **state)
{
    (void)state;
    const char *api = "127.0.0.1:1";
    expect_usage(run_cli("--api", api, "stauts", NULL),
                 "unknown command \"stauts\" (did you mean \"status\"?)");
    expect_usage(run_cli("--api", api, "swichover", "web", NULL), "(did you mean \"switchover\"?)");
    expect_usage(run_cli("--api", api, "evnets", NULL), "(did you mean \"events\"?)");
    expect_usage(run_cli("--api", api, "check", "x", NULL), "(did you mean \"check-config\"?)");
    expect_usage(run_cli("--api", api, "nodes", "drain", "n1", NULL), "(did you mean \"node\"?)");
    expect_usage(run_cli("help", "verison", NULL), "(did you mean \"version\"?)");
    expect_usage(run_cli("--api", api, "status", "--jsn", NULL),
                 "unknown option --jsn (did you mean \"--json\"?)");
    expect_usage(run_cli("--api", api, "events", "--limt=3", NULL),
                 "unknown option --limt=3 (did you mean \"--limit\"?)");
    expect_usage(run_cli("--api", api, "node", "drian", "n1", NULL),
                 "unknown node subcommand \"drian\" (remove, drain, undrain) (did you mean "
                 "\"drain\"?)");
    expect_usage(run_cli("--api", api, "service", "pasue", "web", NULL),
                 "(did you mean \"pause\"?)");
    /* Nothing near: no guess. */
    run_result r = run_cli("--api", api, "xyzzy", NULL);
    assert_int_equal(r.rc, 2);
    assert_non_null(strstr(r.err, "unknown command \"xyzzy\"\n"));
    assert_null(strstr(r.err, "did you mean"));
    run_free(&r);
}

/* On a terminal: colour unless NO_COLOR is set (and not empty); long last columns are cut to the
 * terminal's width. Elsewhere: no colour, nothing cut. */
static void test_status_terminal(void **state)
{
    (void)state;
    agent *a = agent_start();
    agent_run(a);
    setenv("NO_COLOR", "", 1); /* empty: as if unset (no-color.org) */
    g_tty_cols = 64;
    run_result narrow = run_cli_tty("--api", a->addr, "status", NULL);
    setenv("NO_COLOR", "1", 1);
    run_result plain = run_cli_tty("--api", a->addr, "status", NULL);
    g_tty_cols = 0;
    unsetenv("NO_COLOR");
    run_result file = run_cli("--api", a->addr, "status", NULL);
    agent_stop(a);
    assert_int_equal(narrow.rc, 0);
    assert_non_null(strstr(narrow.out, "\033[32malive\033[0m"));
    assert_null(strchr(plain.out, '\033'));
    /* Every line fits in 64 columns; the cut cell ends in "...". */
    for (const char *l = plain.out; *l;) {
        size_t n = strcspn(l, "\r\n");
        if (n > 64)
            fail_msg("a line of %zu columns on a 64-column terminal: %.*s", n, (int)n, l);
        l += n;
        l += strspn(l, "\r\n");
    }
    assert_non_null(strstr(plain.out, "n1, n3 (failed)  switchover r...\r\n"));
    /* Not a terminal: all of it. */
    assert_non_null(strstr(file.out, "switchover requested by operator"));
    assert_null(strchr(file.out, '\033'));
    run_free(&narrow);
    run_free(&plain);
    run_free(&file);
    free(a);
}

int main(void)
{
    unsetenv("UNDERSTUDY_API");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_status_table),
        cmocka_unit_test(test_status_consistent_or_local),
        cmocka_unit_test(test_status_colour),
        cmocka_unit_test(test_status_json_and_env),
        cmocka_unit_test(test_apply),
        cmocka_unit_test(test_apply_body_and_redirect),
        cmocka_unit_test(test_redirect_to_dead_leader),
        cmocka_unit_test(test_redirect_loop_gives_up),
        cmocka_unit_test(test_no_leader_retry),
        cmocka_unit_test(test_switchover),
        cmocka_unit_test(test_switchover_json),
        cmocka_unit_test(test_status_selfheal),
        cmocka_unit_test(test_status_without_failures),
        cmocka_unit_test(test_events_table),
        cmocka_unit_test(test_events_json),
        cmocka_unit_test(test_events_follow),
        cmocka_unit_test(test_events_follow_agent_lost),
        cmocka_unit_test(test_pause_resume_reset),
        cmocka_unit_test(test_drain),
        cmocka_unit_test(test_unreachable),
        cmocka_unit_test(test_version),
        cmocka_unit_test(test_usage),
        cmocka_unit_test(test_check_config_services),
        cmocka_unit_test(test_check_config_node),
        cmocka_unit_test(test_help_every_command),
        cmocka_unit_test(test_did_you_mean),
        cmocka_unit_test(test_command_table),
        cmocka_unit_test(test_status_terminal),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
