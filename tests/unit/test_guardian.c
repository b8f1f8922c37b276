/* test_guardian.c — a real guardian process fencing real process groups, announcing over UDP, and
 * (as root) removing real virtual IPs in a network namespace the test creates. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "node/guardian.h"
#include "lib/key.h"
#include "core/wire.h"
#include "node/supervisor.h"
#include "node/vip.h"
#include "helpers.h"

#define MS 1000000LL

static int64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* `sleep 100` in a process group of its own (pgid == pid), a child of the caller. */
static pid_t spawn_group(const char *cmd)
{
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        setpgid(0, 0);
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    setpgid(pid, pid);
    return pid;
}

/* Running, not a zombie? (A dead child of ours stays a zombie until reaped.) */
static bool running(pid_t pgid)
{
    return us_pgrp_alive(pgid);
}

/* Wait until the group has no live process; returns the time it was first seen gone, or 0. */
static int64_t wait_gone(pid_t pgid, int64_t deadline_ns)
{
    for (;;) {
        if (!running(pgid))
            return mono_ns();
        if (mono_ns() >= deadline_ns)
            return 0;
        struct timespec ts = {0, 200000};
        nanosleep(&ts, NULL);
    }
}

/* Kill (if the test failed to) and reap every process of a group we are parent/subreaper of. */
static void reap_group(pid_t pgid)
{
    if (running(pgid))
        kill(-pgid, SIGKILL);
    wait_gone(pgid, mono_ns() + 2000 * MS);
    while (waitpid(-pgid, NULL, WNOHANG) > 0)
        ;
}

static int udp_open(char *addr, size_t len)
{
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    struct sockaddr_in sa = {.sin_family = AF_INET};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    socklen_t sl = sizeof sa;
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &sl), 0);
    snprintf(addr, len, "127.0.0.1:%d", ntohs(sa.sin_port));
    return fd;
}

/* The cluster key announcements are sealed with (wire.h). */
static us_keyring g_keys = {
    .n = 1, .key = {{1,  2,  3,  4,  5,  6,  7,  8,  9,  10, 11, 12, 13, 14, 15, 16,
                     17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32}}};
#define CLUSTER "gtest"

/* One announcement within timeout_ms, opened with the cluster key, as the text
 * {"t":"fenced","node":SENDER,"inc":INC,...rest of the payload} so that the tests read the
 * sealed sender and incarnation too; length or -1 (also for a datagram that does not open). */
static int udp_recv(int fd, char *buf, size_t cap, int timeout_ms)
{
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    if (poll(&pfd, 1, timeout_ms) != 1)
        return -1;
    static unsigned char dgram[65536], plain[65536];
    ssize_t n = recv(fd, dgram, sizeof dgram, 0);
    if (n < 0)
        return -1;
    us_wire_hdr h;
    size_t plen;
    if (us_wire_open(&g_keys, CLUSTER, dgram, (size_t)n, &h, plain, &plen) != US_WIRE_OK)
        return -1;
    assert_int_equal(h.chan, US_CHAN_GUARDIAN);
    assert_true(h.seq > 0);
    /* Another cluster's name, or another key, does not open it. */
    us_keyring other = g_keys;
    other.key[0][0] ^= 1;
    unsigned char scratch[65536];
    size_t slen;
    us_wire_hdr h2;
    assert_int_equal(us_wire_open(&g_keys, "other", dgram, (size_t)n, &h2, scratch, &slen),
                     US_WIRE_AUTH);
    assert_int_equal(us_wire_open(&other, CLUSTER, dgram, (size_t)n, &h2, scratch, &slen),
                     US_WIRE_AUTH);
    const char *prefix = "{\"t\":\"fenced\",";
    assert_true(plen > strlen(prefix) && memcmp(plain, prefix, strlen(prefix)) == 0);
    int len = snprintf(buf, cap, "{\"t\":\"fenced\",\"node\":\"%s\",\"inc\":%llu,%.*s", h.sender,
                       (unsigned long long)h.inc, (int)(plen - strlen(prefix)),
                       (const char *)plain + strlen(prefix));
    return len < (int)cap ? len : -1;
}

static int read_event_within(us_guardian *g, us_guardian_event *ev, int timeout_ms)
{
    struct pollfd pfd = {.fd = us_guardian_fd(g), .events = POLLIN};
    if (poll(&pfd, 1, timeout_ms) != 1)
        return 0;
    return us_guardian_read_event(g, ev);
}

static us_guardian *start(const char *node, uint64_t inc, const char *peer)
{
    us_guardian *g = NULL;
    assert_int_equal(us_guardian_start(node, inc, &g_keys, CLUSTER, &g), 0);
    assert_non_null(g);
    if (peer) {
        const char *peers[] = {peer};
        assert_int_equal(us_guardian_set_peers(g, peers, 1), 0);
    }
    return g;
}

static void test_lease_expiry_fences_and_announces(void **state)
{
    (void)state;
    char peer[64], buf[2048];
    int udp = udp_open(peer, sizeof peer);
    /* Extreme values check unsigned decimal formatting. */
    us_guardian *g = start("node-1", UINT64_MAX, peer);
    pid_t pg = spawn_group("sleep 100");
    assert_int_equal(us_guardian_track(g, pg, "web", 1ULL << 63, true), 0);
    int64_t deadline = mono_ns() + 100 * MS;
    assert_int_equal(us_guardian_lease(g, deadline), 0);

    int64_t gone = wait_gone(pg, deadline + 1000 * MS);
    assert_true(gone != 0);
    assert_true(gone >= deadline);
    print_message("      fenced %.1f ms after the lease deadline\n",
                  (double)(gone - deadline) / MS);
    int st;
    assert_int_equal(waitpid(pg, &st, 0), pg);
    assert_true(WIFSIGNALED(st));
    assert_int_equal(WTERMSIG(st), SIGKILL);

    us_guardian_event ev;
    assert_int_equal(read_event_within(g, &ev, 1000), 1);
    assert_int_equal(ev.pgid, pg);
    assert_string_equal(ev.service, "web");
    assert_true(ev.epoch == 1ULL << 63);
    assert_int_equal(us_guardian_read_event(g, &ev), 0);

    const char *want = "{\"t\":\"fenced\",\"node\":\"node-1\",\"inc\":18446744073709551615,"
                       "\"fenced\":[{\"service\":\"web\",\"epoch\":9223372036854775808}]}";
    assert_true(udp_recv(udp, buf, sizeof buf, 1000) > 0);
    assert_string_equal(buf, want);
    /* Repeated, about 100 ms apart. */
    int64_t t1 = mono_ns();
    assert_true(udp_recv(udp, buf, sizeof buf, 1000) > 0);
    assert_string_equal(buf, want);
    int64_t gap = mono_ns() - t1;
    assert_true(gap > 50 * MS && gap < 500 * MS);

    us_guardian_stop(g);
    reap_group(pg); /* sh forks its command: that child reparented to us */
    close(udp);
}

static void test_renewal_keeps_instance_and_only_fence_groups_die(void **state)
{
    (void)state;
    char peer[64], buf[2048];
    int udp = udp_open(peer, sizeof peer);
    us_guardian *g = start("n1", 9, peer);
    pid_t active = spawn_group("sleep 100");
    pid_t standby = spawn_group("sleep 100");
    assert_int_equal(us_guardian_track(g, active, "db", 4, true), 0);
    assert_int_equal(us_guardian_track(g, standby, "db-standby", 4, false), 0);

    /* Renewed every 20 ms for 400 ms, a 100 ms lease never runs out. */
    int64_t end = mono_ns() + 400 * MS, deadline = 0;
    while (mono_ns() < end) {
        deadline = mono_ns() + 100 * MS;
        assert_int_equal(us_guardian_lease(g, deadline), 0);
        ut_sleep_ms(20);
        assert_true(running(active));
    }
    us_guardian_event ev;
    assert_int_equal(us_guardian_read_event(g, &ev), 0);
    assert_int_equal(udp_recv(udp, buf, sizeof buf, 0), -1);

    /* Renewals stop: the active instance is fenced, the standby is not. */
    assert_true(wait_gone(active, deadline + 1000 * MS) >= deadline);
    assert_int_equal(read_event_within(g, &ev, 1000), 1);
    assert_int_equal(ev.pgid, active);
    assert_true(udp_recv(udp, buf, sizeof buf, 1000) > 0);
    assert_string_equal(
        buf, "{\"t\":\"fenced\",\"node\":\"n1\",\"inc\":9,\"fenced\":[{\"service\":\"db\","
             "\"epoch\":4}]}");
    /* The announcement is sent after the fencing pass, so the standby would be dead by now. */
    assert_true(running(standby));
    assert_int_equal(waitpid(standby, NULL, WNOHANG), 0);
    assert_int_equal(us_guardian_read_event(g, &ev), 0);

    /* The lease is cleared after fencing: nothing more is killed until a new one is set. */
    pid_t next = spawn_group("sleep 100");
    assert_int_equal(us_guardian_track(g, next, "web", 5, true), 0);
    ut_sleep_ms(150);
    assert_true(running(next));
    /* A lease already past is fenced at once. */
    assert_int_equal(us_guardian_lease(g, mono_ns() - 1), 0);
    assert_true(wait_gone(next, mono_ns() + 1000 * MS) != 0);
    assert_int_equal(read_event_within(g, &ev, 1000), 1);
    assert_int_equal(ev.pgid, next);
    assert_string_equal(ev.service, "web");
    assert_true(ev.epoch == 5);
    assert_true(running(standby));

    /* Untracked groups are left alone, even by a clean stop. */
    pid_t free_pg = spawn_group("sleep 100");
    assert_int_equal(us_guardian_track(g, free_pg, "x", 1, false), 0);
    assert_int_equal(us_guardian_untrack(g, free_pg), 0);

    us_guardian_stop(g);
    int st;
    assert_int_equal(waitpid(standby, &st, WNOHANG), standby);
    assert_true(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
    assert_true(running(free_pg));
    reap_group(free_pg);
    reap_group(standby);
    reap_group(active);
    reap_group(next);
    close(udp);
}

static void test_clean_stop_kills_without_announcing(void **state)
{
    (void)state;
    char peer[64], buf[2048];
    int udp = udp_open(peer, sizeof peer);
    us_guardian *g = start("n1", 1, peer);
    pid_t a = spawn_group("sleep 100 & sleep 100");
    pid_t b = spawn_group("sleep 100");
    assert_int_equal(us_guardian_track(g, a, "web", 2, true), 0);
    assert_int_equal(us_guardian_track(g, b, "hook", 2, false), 0);
    assert_int_equal(us_guardian_lease(g, mono_ns() + 10000 * MS), 0);
    us_guardian_stop(g);
    /* stop returns after the guardian exited, and it exits only once the groups are gone. */
    assert_false(running(a));
    assert_false(running(b));
    int st;
    assert_int_equal(waitpid(a, &st, WNOHANG), a);
    assert_true(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
    assert_int_equal(waitpid(b, &st, WNOHANG), b);
    assert_true(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
    reap_group(a);
    reap_group(b);
    /* The guardian was reaped too: no child of ours is left. */
    assert_int_equal(waitpid(-1, NULL, WNOHANG), -1);
    assert_int_equal(errno, ECHILD);
    assert_int_equal(udp_recv(udp, buf, sizeof buf, 300), -1);
    close(udp);
}

enum agent_end { AGENT_EXITS, AGENT_KILLED, AGENT_FROZEN };

typedef struct agent_report {
    pid_t guardian, active, standby;
    int64_t deadline;
} agent_report;

/* The agent side runs in a child of the test, which starts the guardian and two groups, then
 * exits, or waits to be killed or frozen. Its orphans reparent to us (subreaper). */
static void run_agent_death(enum agent_end how)
{
    char peer[64], buf[2048];
    int udp = udp_open(peer, sizeof peer);
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    pid_t agent = fork();
    assert_true(agent >= 0);
    if (agent == 0) {
        close(fds[0]);
        us_guardian *g;
        if (us_guardian_start("n3", 77, &g_keys, CLUSTER, &g) != 0)
            _exit(1);
        const char *peers[] = {peer};
        agent_report r = {.guardian = us_guardian_pid(g)};
        r.active = spawn_group("sleep 100 & sleep 100");
        r.standby = spawn_group("sleep 100");
        if (us_guardian_set_peers(g, peers, 1) != 0 ||
            us_guardian_track(g, r.active, "db", 12, true) != 0 ||
            us_guardian_track(g, r.standby, "db", 12, false) != 0)
            _exit(1);
        if (how == AGENT_FROZEN) {
            r.deadline = mono_ns() + 200 * MS;
            us_guardian_lease(g, r.deadline);
        }
        (void)!write(fds[1], &r, sizeof r);
        if (how == AGENT_EXITS)
            _exit(0); /* no stop message */
        for (;;)
            pause();
    }
    close(fds[1]);
    agent_report r;
    assert_int_equal(read(fds[0], &r, sizeof r), (ssize_t)sizeof r);
    close(fds[0]);
    const char *want =
        "{\"t\":\"fenced\",\"node\":\"n3\",\"inc\":77,\"fenced\":[{\"service\":\"db\","
        "\"epoch\":12}]}";
    /* Once the agent died the announcements say so: peers need not wait for its silence. */
    const char *want_dead =
        "{\"t\":\"fenced\",\"node\":\"n3\",\"inc\":77,\"fenced\":[{\"service\":\"db\","
        "\"epoch\":12}],\"agent\":\"dead\"}";
    int count = 0;
    int64_t first = 0, last = 0;

    if (how == AGENT_FROZEN) {
        assert_int_equal(kill(agent, SIGSTOP), 0);
        int64_t gone = wait_gone(r.active, r.deadline + 1000 * MS);
        assert_true(gone >= r.deadline);
        print_message("      frozen agent: fenced %.1f ms after the lease deadline\n",
                      (double)(gone - r.deadline) / MS);
        assert_true(udp_recv(udp, buf, sizeof buf, 1000) > 0);
        assert_string_equal(buf, want);
        first = last = mono_ns();
        count++;
        assert_true(running(r.standby));
    }

    /* Terminal and service-manager signals do not end the guardian. */
    kill(r.guardian, SIGTERM);
    kill(r.guardian, SIGINT);
    kill(r.guardian, SIGHUP);
    kill(r.guardian, SIGPIPE);

    int64_t t0 = mono_ns();
    if (how != AGENT_EXITS)
        kill(agent, SIGKILL);
    int st;
    assert_int_equal(waitpid(agent, &st, 0), agent);
    int64_t gone_a = wait_gone(r.active, t0 + 1000 * MS);
    int64_t gone_s = wait_gone(r.standby, t0 + 1000 * MS);
    assert_true(gone_a != 0 && gone_s != 0);
    int64_t took = (gone_a > gone_s ? gone_a : gone_s) - t0;
    print_message("      agent death: groups gone %.1f ms after it\n", (double)took / MS);
    assert_true(took < 1000 * MS);

    /* From the agent's death on, announced 36 times (20 x 100 ms, then 16 x 500 ms); the
     * guardian exits after the last one. Announcements of a lease fencing sent before the death
     * may still be queued. */
    count = 0;
    first = 0;
    while (udp_recv(udp, buf, sizeof buf, 1000) > 0) {
        if (how == AGENT_FROZEN && count == 0 && strcmp(buf, want) == 0)
            continue;
        assert_string_equal(buf, want_dead);
        if (!first)
            first = mono_ns();
        last = mono_ns();
        count++;
    }
    assert_int_equal(count, 36);
    assert_true(last - first > 9000 * MS && last - first < 12000 * MS);
    int64_t dl = mono_ns() + 2000 * MS;
    pid_t w;
    while ((w = waitpid(r.guardian, &st, WNOHANG)) == 0 && mono_ns() < dl)
        ut_sleep_ms(1);
    assert_int_equal(w, r.guardian);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);
    reap_group(r.active);
    reap_group(r.standby);
    close(udp);
}

static void test_agent_exit_without_stop(void **state)
{
    (void)state;
    run_agent_death(AGENT_EXITS);
}

static void test_agent_killed(void **state)
{
    (void)state;
    run_agent_death(AGENT_KILLED);
}

static void test_frozen_agent_fenced_by_lease(void **state)
{
    (void)state;
    run_agent_death(AGENT_FROZEN);
}

/* The announcement reaches every other node of the largest cluster (it used to stop at 16: in a
 * cluster of 25 the leader often never heard it and waited for the lease). One more is refused. */
static void test_announces_to_every_node_of_a_large_cluster(void **state)
{
    (void)state;
    enum { N = US_MAX_NODES - 1 };
    static char addr[N + 1][64];
    const char *peers[N + 1];
    int udp[N];
    for (int i = 0; i < N; i++) {
        udp[i] = udp_open(addr[i], sizeof addr[i]);
        peers[i] = addr[i];
    }
    us_guardian *g = start("n1", 3, NULL);
    snprintf(addr[N], sizeof addr[N], "127.0.0.1:9");
    peers[N] = addr[N];
    assert_int_equal(us_guardian_set_peers(g, peers, N + 1), -E2BIG);
    assert_int_equal(us_guardian_set_peers(g, peers, N), 0);
    pid_t pg = spawn_group("sleep 100");
    assert_int_equal(us_guardian_track(g, pg, "web", 4, true), 0);
    assert_int_equal(us_guardian_lease(g, mono_ns() + 50 * MS), 0);
    assert_true(wait_gone(pg, mono_ns() + 1000 * MS) != 0);
    assert_int_equal(waitpid(pg, NULL, 0), pg);
    char buf[2048];
    for (int i = 0; i < N; i++) {
        assert_true(udp_recv(udp[i], buf, sizeof buf, 1000) > 0);
        assert_non_null(strstr(buf, "\"service\":\"web\",\"epoch\":4"));
        close(udp[i]);
    }
    us_guardian_stop(g);
}

/* ---- planned restart (SIGUSR2) ---- */

static void sock_path(char *out, size_t len)
{
    snprintf(out, len, "/tmp/us-gtest-%d.sock", (int)getpid());
}

/* Connect once the detached guardian listens (it starts listening at the agent's EOF). */
static us_guardian *connect_within(const char *path, int ms)
{
    int64_t end = mono_ns() + ms * MS;
    us_guardian *g = NULL;
    while (us_guardian_connect(path, &g) != 0 && mono_ns() < end) {
        struct timespec ts = {0, 2000000};
        nanosleep(&ts, NULL);
    }
    return g;
}

/* The agent leaves on purpose: the guardian keeps the groups, the VIP registration and a passed
 * listening socket; the next agent adopts them (groups, lease deadline, state version, the old
 * incarnation, the socket, still listening) and is then served as the old one was. */
static void test_detach_and_adopt(void **state)
{
    (void)state;
    char path[108];
    sock_path(path, sizeof path);
    us_guardian *g = start("n1", 5, NULL);
    pid_t guardian = us_guardian_pid(g);
    pid_t active = spawn_group("sleep 100"), standby = spawn_group("sleep 100");
    assert_int_equal(us_guardian_track(g, active, "web", 7, true), 0);
    assert_int_equal(us_guardian_track(g, standby, "db", 3, false), 0);
    int64_t deadline = mono_ns() + 3000 * MS;
    assert_int_equal(us_guardian_lease(g, deadline), 0);
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(lfd, (struct sockaddr *)&sa, sizeof sa), 0);
    assert_int_equal(listen(lfd, 16), 0);
    assert_int_equal(us_guardian_pass_fd(g, lfd, "web 127.0.0.1:0"), 0);
    close(lfd);
    assert_int_equal(us_guardian_detach(g, path, 42, mono_ns() + 5000 * MS, 0, 0, 0), 0);
    us_guardian_leave(g);

    /* Nobody may connect but the next agent; connecting without adopting changes nothing. */
    us_guardian *peek = connect_within(path, 2000);
    assert_non_null(peek);
    us_guardian_leave(peek);
    us_guardian *g2 = connect_within(path, 2000);
    assert_non_null(g2);
    assert_int_equal(us_guardian_pid(g2), guardian);
    assert_true(running(active) && running(standby));

    static us_guardian_handover h;
    assert_int_equal(us_guardian_adopt(g2, 9, &h), 0);
    assert_int_equal(h.n_groups, 2);
    assert_true(h.inc == 5);
    assert_true(h.version == 42);
    assert_true(h.lease_ns == deadline);
    int web = h.groups[0].pgid == active ? 0 : 1;
    assert_int_equal(h.groups[web].pgid, active);
    assert_true(h.groups[web].fence);
    assert_string_equal(h.groups[web].service, "web");
    assert_true(h.groups[web].epoch == 7);
    assert_false(h.groups[1 - web].fence);
    assert_int_equal(h.n_fds, 1);
    assert_string_equal(h.fd_tag[0], "web 127.0.0.1:0");
    int acc = 0;
    socklen_t al = sizeof acc;
    assert_int_equal(getsockopt(h.fds[0], SOL_SOCKET, SO_ACCEPTCONN, &acc, &al), 0);
    assert_int_equal(acc, 1);
    close(h.fds[0]);
    assert_int_equal(access(path, F_OK), -1); /* no longer waiting */

    /* Served as before: a lease that runs out fences the active and reports it to us. */
    assert_int_equal(us_guardian_lease(g2, mono_ns() + 50 * MS), 0);
    us_guardian_event ev;
    assert_int_equal(read_event_within(g2, &ev, 2000), 1);
    assert_int_equal(ev.pgid, active);
    assert_true(running(standby));
    us_guardian_stop(g2); /* kills the standby, waits for the guardian's exit */
    assert_false(running(standby));
    assert_int_equal(waitpid(guardian, NULL, 0), guardian); /* still our child here */
    reap_group(active);
    reap_group(standby);
}

/* The next agent polls for the socket while the guardian is still setting it up (as an agent
 * restarted at once does): every poll that finds nothing or a socket not yet listening must
 * leave the guardian's socket alone, and the agent must find it. Raced 20 times, polling
 * without a pause (seen in CI: a poll between bind and listen, or a poll that found no file
 * as the socket appeared, removed the socket file, and nobody could come back). */
static void test_detach_found_by_an_agent_polling_early(void **state)
{
    (void)state;
    char path[108];
    sock_path(path, sizeof path);
    for (int i = 0; i < 20; i++) {
        us_guardian *g = start("n1", 5, NULL);
        pid_t guardian = us_guardian_pid(g);
        assert_int_equal(us_guardian_detach(g, path, 1, mono_ns() + 5000 * MS, 0, 0, 0), 0);
        us_guardian_leave(g);
        us_guardian *g2 = NULL;
        int64_t end = mono_ns() + 2000 * MS;
        while (us_guardian_connect(path, &g2) != 0 && mono_ns() < end)
            ;
        assert_non_null(g2);
        assert_int_equal(us_guardian_pid(g2), guardian);
        us_guardian_stop(g2);
        assert_int_equal(waitpid(guardian, NULL, 0), guardian);
    }
}

/* Nobody comes back: at the lease end the guardian does what it does when its agent dies. A
 * socket file nobody listens at is not a guardian. */
static void test_detach_nobody_comes(void **state)
{
    (void)state;
    char path[108], peer[64], buf[2048];
    sock_path(path, sizeof path);
    int udp = udp_open(peer, sizeof peer);
    us_guardian *g = start("n1", 5, peer);
    pid_t guardian = us_guardian_pid(g);
    pid_t active = spawn_group("sleep 100"), standby = spawn_group("sleep 100");
    assert_int_equal(us_guardian_track(g, active, "web", 7, true), 0);
    assert_int_equal(us_guardian_track(g, standby, "db", 3, false), 0);
    int64_t deadline = mono_ns() + 300 * MS;
    assert_int_equal(us_guardian_lease(g, deadline), 0);
    assert_int_equal(us_guardian_detach(g, path, 1, mono_ns() + 5000 * MS, 0, 0, 0), 0);
    us_guardian_leave(g);
    int64_t gone = wait_gone(active, deadline + 1500 * MS);
    assert_true(gone >= deadline);
    assert_true(wait_gone(standby, mono_ns() + 1000 * MS) != 0);
    assert_true(udp_recv(udp, buf, sizeof buf, 2000) > 0);
    assert_non_null(strstr(buf, "\"agent\":\"dead\""));
    assert_non_null(strstr(buf, "\"service\":\"web\""));
    assert_int_equal(access(path, F_OK), -1);
    us_guardian *g2 = NULL;
    assert_int_equal(us_guardian_connect(path, &g2), -ENOENT);
    /* A stale socket file (its guardian gone) is removed, not taken for one. */
    int s = socket(AF_UNIX, SOCK_SEQPACKET, 0);
    struct sockaddr_un un = {.sun_family = AF_UNIX};
    snprintf(un.sun_path, sizeof un.sun_path, "%s", path);
    assert_int_equal(bind(s, (struct sockaddr *)&un, sizeof un), 0);
    close(s);
    assert_int_equal(access(path, F_OK), 0);
    assert_int_equal(us_guardian_connect(path, &g2), -ENOENT);
    assert_int_equal(access(path, F_OK), -1);
    kill(guardian, SIGKILL); /* done announcing; no need to wait ~10 s */
    waitpid(guardian, NULL, 0);
    reap_group(active);
    reap_group(standby);
    close(udp);
}

/* A voter as the guardian's stand-in sees it: it answers pings with sealed pongs. */
typedef struct fake_voter {
    int fd;
    char addr[64];
    uint64_t inc;
} fake_voter;

/* Answer the pings that arrived within ms: grant with state version v (or not at all). */
static int voter_answer(fake_voter *v, bool grant, uint64_t ver, int ms)
{
    int answered = 0;
    int64_t end = mono_ns() + ms * MS;
    for (;;) {
        int64_t left = (end - mono_ns()) / MS;
        struct pollfd pfd = {.fd = v->fd, .events = POLLIN};
        if (left <= 0 || poll(&pfd, 1, (int)left) != 1)
            return answered;
        static unsigned char dgram[65536], plain[65536];
        struct sockaddr_in from;
        socklen_t fl = sizeof from;
        ssize_t n = recvfrom(v->fd, dgram, sizeof dgram, 0, (struct sockaddr *)&from, &fl);
        us_wire_hdr h;
        size_t plen;
        if (n <= 0 ||
            us_wire_open(&g_keys, CLUSTER, dgram, (size_t)n, &h, plain, &plen) != US_WIRE_OK)
            continue;
        assert_int_equal(h.chan, US_CHAN_AGENT);
        assert_string_equal(h.sender, "n1");
        assert_true(h.inc == 5);   /* as the agent's incarnation */
        assert_true(h.seq > 1000); /* after the agent's own sequence numbers */
        assert_true(h.to_inc == v->inc);
        plain[plen] = '\0';
        assert_non_null(strstr((char *)plain, "\"t\":\"ping\""));
        assert_null(strstr((char *)plain, "\"rep\"")); /* receivers keep the agent's reports */
        const char *q = strstr((char *)plain, "\"seq\":\"");
        assert_non_null(q);
        unsigned long long round = strtoull(q + 7, NULL, 10);
        if (!grant)
            continue;
        char json[160];
        int len = snprintf(json, sizeof json,
                           "{\"t\":\"pong\",\"seq\":\"%llu\",\"ack\":false,\"grant\":true,"
                           "\"removed\":false,\"v\":\"%llu\"}",
                           round, (unsigned long long)ver);
        us_wire_hdr r = {.chan = US_CHAN_AGENT, .inc = v->inc, .seq = round, .to_inc = 5};
        us_strlcpy(r.sender, "n2", sizeof r.sender);
        unsigned char out[1024];
        size_t dlen = us_wire_seal(&g_keys, CLUSTER, &r, json, (size_t)len, out, sizeof out);
        assert_true(dlen > 0);
        sendto(v->fd, out, dlen, 0, (struct sockaddr *)&from, fl);
        answered++;
    }
}

/* The stand-in renews the lease with the voters while no agent runs, exactly by lease.h's rule
 * (self + a majority; a grant counts only from a voter whose state version is not past the
 * agent's), and stops (the lease then runs out and everything is fenced) when grants stop
 * counting. */
static void test_standin_renews_lease(void **state)
{
    (void)state;
    char path[108];
    sock_path(path, sizeof path);
    fake_voter v = {.inc = 77};
    v.fd = udp_open(v.addr, sizeof v.addr);
    char agent_addr[64];
    int agent_udp = udp_open(agent_addr, sizeof agent_addr);
    us_guardian *g = start("n1", 5, NULL);
    pid_t guardian = us_guardian_pid(g);
    pid_t active = spawn_group("sleep 100");
    assert_int_equal(us_guardian_track(g, active, "web", 7, true), 0);
    int64_t deadline = mono_ns() + 300 * MS;
    assert_int_equal(us_guardian_lease(g, deadline), 0);
    us_guardian_voter voters[2] = {{.name = "n1", .self = true}, {.name = "n2", .inc = 77}};
    us_strlcpy(voters[1].address, v.addr, sizeof voters[1].address);
    assert_int_equal(us_guardian_standin(g, agent_udp, voters, 2), 0);
    close(agent_udp);
    assert_int_equal(us_guardian_detach(g, path, 40, mono_ns() + 10000 * MS, 50, 300, 1000), 0);
    us_guardian_leave(g);

    /* Granted at version <= 40: renewed well past the first deadline. */
    assert_true(voter_answer(&v, true, 40, 1200) >= 10);
    assert_true(running(active));
    /* Grants from a voter past the agent's version (it applied something the agent did not,
     * maybe the release of its role) do not count: the lease runs out, all is fenced. */
    int64_t t = mono_ns();
    voter_answer(&v, true, 41, 100);
    int64_t gone = wait_gone(active, t + 1500 * MS);
    assert_true(gone != 0);
    print_message("      fenced %.0f ms after the grants stopped counting (lease 300 ms)\n",
                  (double)(gone - t) / MS);
    assert_true(gone - t < 500 * MS);
    assert_int_equal(access(path, F_OK), -1);
    kill(guardian, SIGKILL);
    waitpid(guardian, NULL, 0);
    reap_group(active);
    close(v.fd);
}

static void test_bad_arguments_and_dead_guardian(void **state)
{
    (void)state;
    us_guardian *g = start("n1", 1, NULL);
    const char *bad1[] = {"example.org:7000"};
    const char *bad2[] = {"127.0.0.1:0"};
    const char *bad3[] = {"127.0.0.1"};
    assert_int_equal(us_guardian_set_peers(g, bad1, 1), -EINVAL);
    assert_int_equal(us_guardian_set_peers(g, bad2, 1), -EINVAL);
    assert_int_equal(us_guardian_set_peers(g, bad3, 1), -EINVAL);
    const char *many[US_MAX_NODES];
    for (int i = 0; i < US_MAX_NODES; i++)
        many[i] = "127.0.0.1:9";
    assert_int_equal(us_guardian_set_peers(g, many, US_MAX_NODES), -E2BIG);
    assert_int_equal(us_guardian_set_peers(g, many, US_MAX_NODES - 1), 0);
    assert_int_equal(us_guardian_set_peers(g, many, 0), 0);
    assert_int_equal(us_guardian_track(g, 0, "x", 1, true), -EINVAL);
    char longname[100];
    memset(longname, 'a', sizeof longname - 1);
    longname[sizeof longname - 1] = '\0';
    assert_int_equal(us_guardian_track(g, 12345, longname, 1, true), -ENAMETOOLONG);

    /* A guardian that died is noticed through its descriptor and by every call. */
    kill(us_guardian_pid(g), SIGKILL);
    struct pollfd pfd = {.fd = us_guardian_fd(g), .events = POLLIN};
    assert_int_equal(poll(&pfd, 1, 2000), 1);
    us_guardian_event ev;
    assert_true(us_guardian_read_event(g, &ev) < 0);
    assert_true(us_guardian_lease(g, mono_ns()) < 0);
    us_guardian_stop(g);
    assert_int_equal(waitpid(-1, NULL, WNOHANG), -1);
}

/* ---- virtual IPs ---- */

static void test_vip_table_limit(void **state)
{
    (void)state;
    us_guardian *g = start("n1", 1, NULL);
    us_vip v;
    char err[256];
    /* On a device that does not exist: the clean stop below removes nothing, quickly. */
    assert_int_equal(us_vip_parse("198.18.0.1/24 dev nodev-guard0", &v, err, sizeof err), 0);
    for (int i = 0; i < US_GUARDIAN_MAX_VIPS; i++) {
        v.addr[2] = (uint8_t)(i >> 8);
        v.addr[3] = (uint8_t)i;
        assert_int_equal(us_guardian_vip(g, &v, true), 0);
    }
    v.addr[2] = 200;
    v.addr[3] = 200;
    assert_int_equal(us_guardian_vip(g, &v, true), -ENOSPC);
    v.addr[2] = 0;
    v.addr[3] = 5;
    assert_int_equal(us_guardian_vip(g, &v, true), 0); /* already held */
    v.prefix = 32;
    assert_int_equal(us_guardian_vip(g, &v, true), 0); /* same address and device: the same VIP */
    assert_int_equal(us_guardian_vip(g, &v, false), 0);
    assert_int_equal(us_guardian_vip(g, &v, false), 0); /* forgetting twice is fine */
    v.addr[2] = 200;
    v.addr[3] = 200;
    assert_int_equal(us_guardian_vip(g, &v, true), 0); /* the freed slot */
    us_guardian_stop(g);
}

static int orig_ns = -1;

static int ns_teardown(void **state)
{
    (void)state;
    if (orig_ns >= 0) {
        setns(orig_ns, CLONE_NEWNET); /* the test namespace dies with its last process */
        close(orig_ns);
        orig_ns = -1;
    }
    return 0;
}

/* A fresh network namespace for the test process (and the guardians it forks) with a veth pair
 * gva/gvb, both up; loopback up for the UDP announcements. gva has an address of its own in the
 * VIPs' subnet, as a real node does: the kernel removes the secondary addresses of a subnet with
 * its primary one (unless promote_secondaries is set). */
static int ns_setup(void **state)
{
    if (geteuid() != 0)
        return 0; /* each test skips */
    orig_ns = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
    if (orig_ns < 0 || unshare(CLONE_NEWNET) != 0 ||
        system("ip link set lo up && ip link add gva type veth peer name gvb && "
               "ip link set gva up && ip link set gvb up && ip addr add 198.18.0.1/24 dev gva") !=
            0) {
        print_error("cannot set up the test namespace\n");
        ns_teardown(state);
        return -1;
    }
    return 0;
}

static us_vip vip(const char *text)
{
    us_vip v;
    char err[256];
    if (us_vip_parse(text, &v, err, sizeof err) != 0) {
        print_error("%s\n", err);
        fail();
    }
    return v;
}

static void need_root(void)
{
    if (geteuid() != 0) {
        print_message("      needs root (network namespace, netlink): skipped\n");
        skip();
    }
    assert_true(orig_ns >= 0);
}

/* Wait until none of the VIPs is on its device; the time that was first seen, or 0. */
static int64_t wait_vips_gone(const us_vip *v, int n, int64_t deadline_ns)
{
    for (;;) {
        bool any = false;
        for (int i = 0; i < n; i++) {
            int rc = us_vip_present(&v[i]);
            assert_true(rc >= 0);
            any = any || rc == 1;
        }
        if (!any)
            return mono_ns();
        if (mono_ns() >= deadline_ns)
            return 0;
        ut_sleep_ms(1);
    }
}

static void test_lease_expiry_removes_vips(void **state)
{
    (void)state;
    need_root();
    us_guardian *g = start("n1", 1, NULL);
    us_vip v[2] = {vip("198.18.0.100/24 dev gva"), vip("2001:db8::10/64 dev gva")};
    us_vip forgotten = vip("198.18.0.101/24 dev gva");
    for (int i = 0; i < 2; i++) {
        assert_int_equal(us_guardian_vip(g, &v[i], true), 0);
        assert_int_equal(us_vip_add(&v[i]), 0);
    }
    /* Registered, then forgotten: no longer the guardian's business. */
    assert_int_equal(us_guardian_vip(g, &forgotten, true), 0);
    assert_int_equal(us_vip_add(&forgotten), 0);
    assert_int_equal(us_guardian_vip(g, &forgotten, false), 0);

    /* Renewed every 20 ms for 300 ms, a 100 ms lease keeps them. */
    int64_t end = mono_ns() + 300 * MS, deadline = 0;
    while (mono_ns() < end) {
        deadline = mono_ns() + 100 * MS;
        assert_int_equal(us_guardian_lease(g, deadline), 0);
        ut_sleep_ms(20);
    }
    for (int i = 0; i < 2; i++)
        assert_int_equal(us_vip_present(&v[i]), 1);

    /* Renewals stop: both go (no process group is registered: the VIPs go regardless). */
    int64_t gone = wait_vips_gone(v, 2, deadline + 1000 * MS);
    assert_true(gone != 0);
    assert_true(gone >= deadline);
    print_message("      VIPs removed %.1f ms after the lease deadline\n",
                  (double)(gone - deadline) / MS);
    assert_int_equal(us_vip_present(&forgotten), 1);

    /* They stay registered: added again, they are removed at the next fencing too. */
    assert_int_equal(us_vip_add(&v[0]), 0);
    assert_int_equal(us_guardian_lease(g, mono_ns() - 1), 0);
    assert_true(wait_vips_gone(v, 1, mono_ns() + 1000 * MS) != 0);

    /* A clean stop removes what is still registered, before it returns. */
    assert_int_equal(us_vip_add(&v[0]), 0);
    assert_int_equal(us_vip_add(&v[1]), 0);
    us_guardian_stop(g);
    assert_int_equal(us_vip_present(&v[0]), 0);
    assert_int_equal(us_vip_present(&v[1]), 0);
    assert_int_equal(us_vip_present(&forgotten), 1);
    assert_int_equal(us_vip_del(&forgotten), 0);
}

static void test_agent_death_removes_vips(void **state)
{
    (void)state;
    need_root();
    char peer[64], buf[2048];
    int udp = udp_open(peer, sizeof peer);
    us_vip v = vip("198.18.0.100/24 dev gva");
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    pid_t agent = fork();
    assert_true(agent >= 0);
    if (agent == 0) {
        close(fds[0]);
        us_guardian *g;
        if (us_guardian_start("n3", 77, &g_keys, CLUSTER, &g) != 0)
            _exit(1);
        const char *peers[] = {peer};
        agent_report r = {.guardian = us_guardian_pid(g)};
        r.active = spawn_group("sleep 100");
        if (us_guardian_set_peers(g, peers, 1) != 0 ||
            us_guardian_track(g, r.active, "web", 3, true) != 0 ||
            us_guardian_vip(g, &v, true) != 0 || us_vip_add(&v) != 0)
            _exit(1);
        (void)!write(fds[1], &r, sizeof r);
        for (;;)
            pause();
    }
    close(fds[1]);
    agent_report r;
    assert_int_equal(read(fds[0], &r, sizeof r), (ssize_t)sizeof r);
    close(fds[0]);
    assert_int_equal(us_vip_present(&v), 1);

    int64_t t0 = mono_ns();
    kill(agent, SIGKILL);
    assert_int_equal(waitpid(agent, NULL, 0), agent);
    /* Removed right after the kill, before the first announcement leaves. */
    assert_true(udp_recv(udp, buf, sizeof buf, 2000) > 0);
    assert_int_equal(us_vip_present(&v), 0);
    print_message("      agent death: VIP gone and fencing announced %.1f ms after it\n",
                  (double)(mono_ns() - t0) / MS);
    assert_false(running(r.active));

    /* The guardian would announce for ~10 s more: not needed here. */
    kill(r.guardian, SIGKILL);
    assert_int_equal(waitpid(r.guardian, NULL, 0), r.guardian);
    reap_group(r.active);
    close(udp);
}

int main(void)
{
    prctl(PR_SET_CHILD_SUBREAPER, 1);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lease_expiry_fences_and_announces),
        cmocka_unit_test(test_renewal_keeps_instance_and_only_fence_groups_die),
        cmocka_unit_test(test_clean_stop_kills_without_announcing),
        cmocka_unit_test(test_agent_exit_without_stop),
        cmocka_unit_test(test_agent_killed),
        cmocka_unit_test(test_frozen_agent_fenced_by_lease),
        cmocka_unit_test(test_bad_arguments_and_dead_guardian),
        cmocka_unit_test(test_vip_table_limit),
        cmocka_unit_test(test_announces_to_every_node_of_a_large_cluster),
        cmocka_unit_test(test_detach_and_adopt),
        cmocka_unit_test(test_detach_found_by_an_agent_polling_early),
        cmocka_unit_test(test_detach_nobody_comes),
        cmocka_unit_test(test_standin_renews_lease),
        cmocka_unit_test_setup_teardown(test_lease_expiry_removes_vips, ns_setup, ns_teardown),
        cmocka_unit_test_setup_teardown(test_agent_death_removes_vips, ns_setup, ns_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
