/* httpd.c — the benchmarks' HTTP backend: one thread, epoll, a static answer, one request per
 * connection ("Connection: close"), so that the backend costs as little as possible next to the
 * proxies and the HA managers being measured (Python's http.server manages ~2k connections/s).
 *
 * usage: httpd [-l ADDR:PORT] [-b BODY | -e]
 *   -l  where to listen (default 0.0.0.0:8080)
 *   -b  the body of every answer (a newline is appended)
 *   -e  body "NODE epoch EPOCH" from UNDERSTUDY_NODE and UNDERSTUDY_EPOCH (an understudy instance)
 *
 * Every connection gets the answer once its request head ("\r\n\r\n") has arrived, then is closed.
 * A client that sends nothing is dropped after IDLE_MS. Exits on SIGTERM/SIGINT.
 * Built by the bench scripts: gcc -O2 -o build/bench/httpd bench/httpd.c
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_FDS 65536
#define MAX_EVENTS 256
#define HEAD_MAX 4096
#define IDLE_MS 10000

typedef struct conn {
    int len;         /* bytes of the request head seen so far (kept only for the terminator) */
    char tail[4];    /* the last bytes seen, to find "\r\n\r\n" across reads */
    long long since; /* accept time, ms */
    int open;
} conn;

static conn conns[MAX_FDS];
static char answer[1024];
static size_t answer_len;
static volatile sig_atomic_t stop;

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void on_signal(int sig)
{
    (void)sig;
    stop = 1;
}

static void drop(int ep, int fd)
{
    epoll_ctl(ep, EPOLL_CTL_DEL, fd, NULL);
    close(fd);
    conns[fd].open = 0;
}

/* Read what is there; answer and close once the head is complete. */
static void serve(int ep, int fd)
{
    char buf[HEAD_MAX];
    for (;;) {
        ssize_t n = read(fd, buf, sizeof buf);
        if (n == 0) {
            drop(ep, fd);
            return;
        }
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN)
                drop(ep, fd);
            return;
        }
        conn *c = &conns[fd];
        char win[HEAD_MAX + 4];
        memcpy(win, c->tail, 4);
        memcpy(win + 4, buf, (size_t)n);
        if (memmem(win, (size_t)n + 4, "\r\n\r\n", 4)) {
            /* The answer is far smaller than the socket buffer: one write does it. */
            ssize_t w = write(fd, answer, answer_len);
            (void)w;
            drop(ep, fd);
            return;
        }
        memcpy(c->tail, win + n, 4);
        c->len += (int)n;
        if (c->len > 64 * HEAD_MAX) {
            drop(ep, fd);
            return;
        }
    }
}

static int listen_on(const char *spec)
{
    char host[64];
    const char *colon = strrchr(spec, ':');
    if (!colon || (size_t)(colon - spec) >= sizeof host) {
        fprintf(stderr, "httpd: -l %s: expected ADDR:PORT\n", spec);
        return -1;
    }
    memcpy(host, spec, (size_t)(colon - spec));
    host[colon - spec] = 0;
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(colon + 1))};
    if (inet_pton(AF_INET, host, &sa.sin_addr) != 1) {
        fprintf(stderr, "httpd: -l %s: '%s' is not an IPv4 address\n", spec, host);
        return -1;
    }
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0 || listen(fd, 4096) != 0) {
        fprintf(stderr, "httpd: cannot listen on %s: %s\n", spec, strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

int main(int argc, char **argv)
{
    const char *where = "0.0.0.0:8080";
    char body[512] = "ok";
    int opt;
    while ((opt = getopt(argc, argv, "l:b:e")) != -1) {
        switch (opt) {
        case 'l':
            where = optarg;
            break;
        case 'b':
            snprintf(body, sizeof body, "%s", optarg);
            break;
        case 'e': {
            const char *node = getenv("UNDERSTUDY_NODE"), *epoch = getenv("UNDERSTUDY_EPOCH");
            if (!node || !epoch) {
                fprintf(stderr, "httpd: -e: UNDERSTUDY_NODE/UNDERSTUDY_EPOCH are not set\n");
                return 2;
            }
            snprintf(body, sizeof body, "%s epoch %s", node, epoch);
            break;
        }
        default:
            fprintf(stderr, "usage: httpd [-l ADDR:PORT] [-b BODY | -e]\n");
            return 2;
        }
    }
    answer_len = (size_t)snprintf(answer, sizeof answer,
                                  "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                                  "Content-Length: %zu\r\nConnection: close\r\n\r\n%s\n",
                                  strlen(body) + 1, body);

    struct sigaction sa = {.sa_handler = on_signal};
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    int lfd = listen_on(where);
    if (lfd < 0)
        return 1;
    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = lfd};
    epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
    fprintf(stderr, "httpd: listening on %s, answering \"%s\"\n", where, body);

    struct epoll_event evs[MAX_EVENTS];
    long long last_sweep = now_ms();
    while (!stop) {
        int n = epoll_wait(ep, evs, MAX_EVENTS, 1000);
        if (n < 0 && errno != EINTR) {
            perror("httpd: epoll_wait");
            return 1;
        }
        for (int i = 0; i < n; i++) {
            int fd = evs[i].data.fd;
            if (fd != lfd) {
                serve(ep, fd);
                continue;
            }
            for (int k = 0; k < 1024; k++) {
                int cfd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
                if (cfd < 0)
                    break; /* EAGAIN, or out of fds / memory: try again on the next event */
                if (cfd >= MAX_FDS) {
                    close(cfd);
                    continue;
                }
                conns[cfd] = (conn){.since = now_ms(), .open = 1};
                struct epoll_event cev = {.events = EPOLLIN | EPOLLRDHUP, .data.fd = cfd};
                epoll_ctl(ep, EPOLL_CTL_ADD, cfd, &cev);
                serve(ep, cfd); /* the request often came with the handshake's last ACK */
            }
        }
        long long now = now_ms();
        if (now - last_sweep >= 1000) {
            last_sweep = now;
            for (int fd = 0; fd < MAX_FDS; fd++)
                if (conns[fd].open && now - conns[fd].since > IDLE_MS)
                    drop(ep, fd);
        }
    }
    return 0;
}
