/* chaos-service: the service the chaos runs (tests/chaos/nemesis.py) put under understudy.
 *
 *   chaos-service run SVC LOG SOCKDIR PORT
 *       While it acts as the active instance, appends "SVC NODE EPOCH T_NS\n" to LOG every 10 ms
 * (one O_APPEND write per line: LOG is the shared receiver; T_NS is CLOCK_MONOTONIC, the clock
 * every namespace shares and that the wall-clock faults leave alone) and answers HTTP GETs on PORT
 * with "NODE EPOCH" (200); otherwise it answers 503 and writes nothing. Started with
 *       UNDERSTUDY_ROLE=active (a cold instance, or a hot one started for a promotion) it is active
 * under UNDERSTUDY_EPOCH. A hot standby becomes active only when a promote hook tells it so,
 * through the datagram socket SOCKDIR/SVC-NODE.sock that the process binds when it starts (so a
 * process started later never takes up what a hook told an earlier one). chaos-service hook
 * promote|demote SVC SOCKDIR Sends "active EPOCH" / "standby EPOCH" to that socket (a promote is
 * retried for up to 5 s while the process is starting; a demote with no process is done at once).
 *
 * C rather than Python: the interpreter's start-up on a loaded 2-core machine (0.3-2 s) would be
 * measured as takeover time. */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

static _Atomic long long g_epoch;
static atomic_bool g_active;
static const char *g_node = "?";

static long long mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static int sock_path(struct sockaddr_un *sa, const char *dir, const char *svc, const char *node)
{
    memset(sa, 0, sizeof *sa);
    sa->sun_family = AF_UNIX;
    int n = snprintf(sa->sun_path, sizeof sa->sun_path, "%s/%s-%s.sock", dir, svc, node);
    return n > 0 && (size_t)n < sizeof sa->sun_path ? 0 : -1;
}

static void *http_thread(void *arg)
{
    int ls = *(int *)arg;
    for (;;) {
        int c = accept(ls, NULL, NULL);
        if (c < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            usleep(10000);
            continue;
        }
        struct timeval tv = {0, 300000};
        setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        setsockopt(c, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
        char req[4096];
        size_t got = 0;
        while (got < sizeof req - 1) {
            ssize_t r = read(c, req + got, sizeof req - 1 - got);
            if (r <= 0)
                break;
            got += (size_t)r;
            req[got] = 0;
            if (strstr(req, "\r\n\r\n"))
                break;
        }
        char body[128], resp[512];
        const char *status = "503 Service Unavailable";
        if (atomic_load(&g_active)) {
            snprintf(body, sizeof body, "%s %lld\n", g_node, (long long)atomic_load(&g_epoch));
            status = "200 OK";
        } else {
            snprintf(body, sizeof body, "standby\n");
        }
        int n = snprintf(resp, sizeof resp,
                         "HTTP/1.0 %s\r\nContent-Type: text/plain\r\nContent-Length: %zu\r\n"
                         "Connection: close\r\n\r\n%s",
                         status, strlen(body), body);
        if (n > 0 && send(c, resp, (size_t)n, MSG_NOSIGNAL) < 0) {
            /* the client went away (a proxy's connection reset by a partition): no SIGPIPE */
        }
        shutdown(c, SHUT_WR);
        close(c);
    }
    return NULL;
}

static int run(const char *svc, const char *log, const char *dir, int port)
{
    g_node = getenv("UNDERSTUDY_NODE") ? getenv("UNDERSTUDY_NODE") : "?";
    const char *e = getenv("UNDERSTUDY_EPOCH");
    const char *role = getenv("UNDERSTUDY_ROLE");
    atomic_store(&g_epoch, e ? atoll(e) : 0);
    atomic_store(&g_active, role && strcmp(role, "active") == 0);

    struct sockaddr_un sa;
    if (sock_path(&sa, dir, svc, g_node) != 0) {
        fprintf(stderr, "chaos-service: socket path too long\n");
        return 1;
    }
    unlink(sa.sun_path);
    int us = socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (us < 0 || bind(us, (struct sockaddr *)&sa, sizeof sa) != 0) {
        perror("chaos-service: role socket");
        return 1;
    }
    int ls = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in in = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    if (ls < 0 || bind(ls, (struct sockaddr *)&in, sizeof in) != 0 || listen(ls, 1024) != 0) {
        perror("chaos-service: http");
        return 1;
    }
    pthread_t t;
    if (pthread_create(&t, NULL, http_thread, &ls) != 0) {
        fprintf(stderr, "chaos-service: cannot start the http thread\n");
        return 1;
    }
    long long end = mono_ns() + 4LL * 3600 * 1000000000LL; /* bounds a leak */
    long long next = mono_ns();
    while (mono_ns() < end) {
        char msg[128];
        ssize_t r;
        while ((r = recv(us, msg, sizeof msg - 1, 0)) > 0) {
            msg[r] = 0;
            char what[16];
            long long ep;
            if (sscanf(msg, "%15s %lld", what, &ep) != 2)
                continue;
            if (strcmp(what, "active") == 0 && ep > atomic_load(&g_epoch)) {
                atomic_store(&g_epoch, ep);
                atomic_store(&g_active, true);
            } else if (strcmp(what, "standby") == 0 && ep == atomic_load(&g_epoch)) {
                atomic_store(&g_active, false);
            }
        }
        if (atomic_load(&g_active)) {
            char line[256];
            int n = snprintf(line, sizeof line, "%s %s %lld %lld\n", svc, g_node,
                             (long long)atomic_load(&g_epoch), mono_ns());
            int fd = open(log, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
            if (fd >= 0) {
                if (n > 0 && write(fd, line, (size_t)n) < 0) {
                    /* nothing to do: the receiver is gone */
                }
                close(fd);
            }
        }
        next += 10000000LL;
        long long now = mono_ns();
        if (next < now)
            next = now;
        struct pollfd p = {.fd = us, .events = POLLIN};
        poll(&p, 1, (int)((next - now) / 1000000LL));
    }
    return 0;
}

static int hook(const char *kind, const char *svc, const char *dir)
{
    const char *node = getenv("UNDERSTUDY_NODE") ? getenv("UNDERSTUDY_NODE") : "?";
    const char *e = getenv("UNDERSTUDY_EPOCH");
    bool promote = strcmp(kind, "promote") == 0;
    char msg[64];
    int n = snprintf(msg, sizeof msg, "%s %lld", promote ? "active" : "standby", e ? atoll(e) : 0);
    struct sockaddr_un sa;
    if (sock_path(&sa, dir, svc, node) != 0)
        return 1;
    int s = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    long long end = mono_ns() + 5000000000LL;
    for (;;) {
        if (sendto(s, msg, (size_t)n, 0, (struct sockaddr *)&sa, sizeof sa) == n)
            return 0;
        if (!promote)
            return 0; /* no process: nothing acts, nothing to demote */
        if (mono_ns() > end) {
            fprintf(stderr, "chaos-service hook %s: %s\n", kind, strerror(errno));
            return 1;
        }
        usleep(5000);
    }
}

int main(int argc, char **argv)
{
    if (argc == 6 && strcmp(argv[1], "run") == 0)
        return run(argv[2], argv[3], argv[4], atoi(argv[5]));
    if (argc == 5 && strcmp(argv[1], "hook") == 0 &&
        (strcmp(argv[2], "promote") == 0 || strcmp(argv[2], "demote") == 0))
        return hook(argv[2], argv[3], argv[4]);
    fprintf(stderr,
            "usage: chaos-service run SVC LOG SOCKDIR PORT | hook promote|demote SVC SOCKDIR\n");
    return 2;
}
