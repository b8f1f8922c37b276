/* sdnotify.c — see sdnotify.h. */
#include "node/sdnotify.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "lib/log.h"

/* The notification protocol itself (sd_notify(3), "stable interface" in systemd's docs): one
 * datagram to the unix socket NOTIFY_SOCKET names, a path or, with a leading '@', an abstract
 * name. Written here rather than linked from libsystemd, whose dependencies (gcrypt, lz4, zstd,
 * lzma, ...) cost every agent ~0.8 MB of resident memory for these few lines. */
static int send_notify(const char *msg)
{
    const char *e = getenv("NOTIFY_SOCKET");
    if (!e || !e[0])
        return 0;
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    size_t len = strlen(e);
    if ((e[0] != '/' && e[0] != '@') || len < 2 || len > sizeof sa.sun_path)
        return -EINVAL;
    memcpy(sa.sun_path, e, len);
    if (e[0] == '@')
        sa.sun_path[0] = '\0';
    else if (len == sizeof sa.sun_path)
        return -EINVAL; /* a path needs its terminator */
    socklen_t salen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len + (e[0] == '/'));
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    ssize_t n = sendto(fd, msg, strlen(msg), MSG_NOSIGNAL, (struct sockaddr *)&sa, salen);
    int rc = n < 0 ? -errno : 1;
    close(fd);
    return rc;
}

/* sd_watchdog_enabled(3): WATCHDOG_USEC when set and meant for this process (WATCHDOG_PID unset
 * or ours), else 0. */
static uint64_t watchdog_usec(void)
{
    const char *u = getenv("WATCHDOG_USEC"), *p = getenv("WATCHDOG_PID");
    if (!u || !u[0])
        return 0;
    char *end;
    errno = 0;
    unsigned long long usec = strtoull(u, &end, 10);
    if (errno || *end || u[0] == '-' || usec == 0)
        return 0;
    if (p && p[0]) {
        long long pid = strtoll(p, &end, 10);
        if (*end || pid != (long long)getpid())
            return 0;
    }
    return usec;
}

static void notify(us_sdnotify *s, const char *msg)
{
    if (!s->enabled)
        return;
    int rc = send_notify(msg);
    if (rc < 0)
        us_debug("sd_notify(%s): %s", msg, strerror(-rc));
}

static void on_watchdog(uv_timer_t *t)
{
    us_sdnotify *s = t->data;
    if (s->ready || s->stopping) {
        notify(s, "WATCHDOG=1");
        return;
    }
    char msg[64];
    snprintf(msg, sizeof msg, "WATCHDOG=1\nEXTEND_TIMEOUT_USEC=%llu",
             (unsigned long long)s->watchdog_usec);
    notify(s, msg);
}

void us_sd_start(us_sdnotify *s, uv_loop_t *loop)
{
    memset(s, 0, sizeof *s);
    const char *sock = getenv("NOTIFY_SOCKET");
    s->enabled = sock && sock[0];
    if (!s->enabled)
        return;
    uint64_t usec = watchdog_usec();
    if (usec > 0) {
        s->watchdog_usec = usec;
        uint64_t every_ms = usec / 2000;
        uv_timer_init(loop, &s->timer);
        s->timer.data = s;
        s->timer_on = true;
        uv_timer_start(&s->timer, on_watchdog, 0, every_ms > 0 ? every_ms : 1);
        us_info("systemd watchdog: %llu ms, pinging every %llu ms",
                (unsigned long long)(usec / 1000), (unsigned long long)(every_ms ? every_ms : 1));
    }
}

void us_sd_status(us_sdnotify *s, const char *status)
{
    if (!s->enabled || strcmp(s->status, status) == 0)
        return;
    snprintf(s->status, sizeof s->status, "%s", status);
    char msg[sizeof s->status + 8];
    snprintf(msg, sizeof msg, "STATUS=%s", s->status);
    /* One line per message: a newline would start another assignment. */
    for (char *p = msg; *p; p++)
        if (*p == '\n')
            *p = ' ';
    notify(s, msg);
}

void us_sd_ready(us_sdnotify *s)
{
    if (s->ready)
        return;
    s->ready = true;
    notify(s, "READY=1");
}

void us_sd_stopping(us_sdnotify *s)
{
    if (s->stopping)
        return;
    s->stopping = true;
    notify(s, "STOPPING=1");
}

void us_sd_close(us_sdnotify *s)
{
    if (!s->timer_on)
        return;
    s->timer_on = false;
    uv_timer_stop(&s->timer);
    uv_close((uv_handle_t *)&s->timer, NULL);
}
