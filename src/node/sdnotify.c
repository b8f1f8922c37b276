/* sdnotify.c — see sdnotify.h. */
#include "node/sdnotify.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <systemd/sd-daemon.h>

#include "lib/log.h"

static void notify(us_sdnotify *s, const char *msg)
{
    if (!s->enabled)
        return;
    int rc = sd_notify(0, msg);
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
    uint64_t usec = 0;
    if (sd_watchdog_enabled(0, &usec) > 0 && usec > 0) {
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
