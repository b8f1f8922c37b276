/* test_cli.c — us_cli_main against fake agents: the api module with canned handlers, each on
 * its own loop in its own thread. Output is captured by pointing fds 1 and 2 at temp files. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "api.h"
#include "cli.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
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
    /* what the agent saw; read only after agent_stop */
    int n_posts;
    char last_target[256];
    char last_file[64];
    char last_to[16];
    char last_body[4096];
} agent;

static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    socklen_t len = sizeof sa;
    getsockname(fd, (struct sockaddr *)&sa, &len);
    close(fd);
    return ntohs(sa.sin_port);
}

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

static void h_status(us_api_req *r, void *data)
{
    us_api_reply_json(r, 200, status_json(data));
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
    char svc[64] = "";
    sscanf(us_api_req_path(r), "/v1/services/%63[^/]/switchover", svc);
    if (strcmp(svc, "web") != 0) {
        us_api_reply_error(r, 404, "no such service: %s", svc);
        return;
    }
    const char *to = us_api_req_query(r, "to");
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
    us_api_reply_json(r, 202, json_pack("{s:s}", "node", "n3"));
    uv_timer_start(&a->change, on_change, 200, 0);
}

static void on_stop(uv_async_t *h)
{
    agent *a = h->data;
    us_api_stop(a->api);
    uv_close((uv_handle_t *)&a->stop, NULL);
    uv_close((uv_handle_t *)&a->change, NULL);
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
    snprintf(a->addr, sizeof a->addr, "127.0.0.1:%d", free_port());
    char err[256];
    assert_int_equal(us_api_start(&a->loop, a->addr, &a->api, err, sizeof err), 0);
    us_api_route(a->api, "GET", "/v1/status", h_status, a);
    us_api_route(a->api, "GET", "/v1/version", h_version, a);
    us_api_route(a->api, "POST", "/v1/services", h_apply, a);
    us_api_route(a->api, "POST", "/v1/services/", h_switchover, a);
    us_api_route(a->api, "POST", "/v1/nodes/", h_remove, a);
    uv_async_init(&a->loop, &a->stop, on_stop);
    uv_timer_init(&a->loop, &a->change);
    a->stop.data = a;
    a->change.data = a;
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

static char *write_temp(const char *dir_template_out, const char *name, const char *content)
{
    char *path = malloc(512);
    snprintf(path, 512, "%s/%s", dir_template_out, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(content, f);
    fclose(f);
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
    assert_true(has_row(r.out, "SERVICE ACTIVE EPOCH STANDBYS LAST CHANGE"));
    assert_true(has_row(r.out, "web n2 7 n1, n3 (failed) switchover requested by operator"));
    assert_null(strchr(r.out, '\033')); /* not a terminal: no colour */
    /* Columns line up: STATE starts at the same offset in the header and in the rows. */
    const char *hdr = strstr(r.out, "NAME");
    const char *row = strstr(r.out, "\nn2 ") + 1;
    assert_int_equal(strstr(hdr, "STATE") - hdr, strstr(row, "suspect") - row);
    run_free(&r);
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
    snprintf(a->redirect_to, sizeof a->redirect_to, "127.0.0.1:%d", free_port());
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
    run_result unknown = run_cli("--api", a->addr, "switchover", "nope", NULL);
    agent_stop(a);
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

static void test_unreachable(void **state)
{
    (void)state;
    char addr[64], want[256];
    snprintf(addr, sizeof addr, "127.0.0.1:%d", free_port());
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
    expect_usage(run_cli("--api", api, "node", NULL), "missing subcommand");
    expect_usage(run_cli("--api", api, "node", "remove", NULL), "missing NAME");
    expect_usage(run_cli("--api", api, "node", "rename", "x", NULL), "unknown node subcommand");
    expect_usage(run_cli("--api", api, "status", "extra", NULL), "unexpected argument");
    expect_usage(run_cli("--bogus", "status", NULL), "unknown option --bogus");
    expect_usage(run_cli("status", "--api", NULL), "--api needs a value");
    expect_usage(run_cli("--api", "nope", "status", NULL), "invalid agent address \"nope\"");
    expect_usage(run_cli("--api", api, "status", "--to", "n1", NULL), "--to only applies");

    run_result r = run_cli("help", NULL);
    assert_int_equal(r.rc, 0);
    assert_non_null(strstr(r.out, "usage: understudy [--api HOST:PORT] [--json] COMMAND"));
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
}

int main(void)
{
    unsetenv("UNDERSTUDY_API");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_status_table),
        cmocka_unit_test(test_status_colour),
        cmocka_unit_test(test_status_json_and_env),
        cmocka_unit_test(test_apply),
        cmocka_unit_test(test_apply_body_and_redirect),
        cmocka_unit_test(test_redirect_to_dead_leader),
        cmocka_unit_test(test_redirect_loop_gives_up),
        cmocka_unit_test(test_no_leader_retry),
        cmocka_unit_test(test_switchover),
        cmocka_unit_test(test_switchover_json),
        cmocka_unit_test(test_unreachable),
        cmocka_unit_test(test_version),
        cmocka_unit_test(test_usage),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
