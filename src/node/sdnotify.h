/* sdnotify.h — systemd service notifications (sd_notify(3)) for a Type=notify unit
 * (dist/understudy.service):
 *  - READY=1 once, when the agent has joined (the caller decides when: agent.c);
 *  - STATUS=... whenever the one-line status changes ("leader n1; active here: web");
 *  - WATCHDOG=1 from the libuv loop every half of WATCHDOG_USEC when the watchdog is enabled for
 *    this process (sd_watchdog_enabled: WATCHDOG_USEC set, and WATCHDOG_PID unset or ours), so a
 *    loop that hangs stops the pings; until READY each ping also extends the start timeout
 *    (EXTEND_TIMEOUT_USEC), so a node waiting for its cluster's quorum is not killed for it;
 *  - STOPPING=1 once, when the SIGTERM hand-over (or any stop) begins.
 * Without NOTIFY_SOCKET (not started by systemd) nothing is sent and no timer runs.
 */
#ifndef US_SDNOTIFY_H
#define US_SDNOTIFY_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

typedef struct us_sdnotify {
    bool enabled; /* NOTIFY_SOCKET was set */
    bool ready, stopping;
    uint64_t watchdog_usec; /* 0 = no watchdog */
    bool timer_on;
    uv_timer_t timer;
    char status[256]; /* last STATUS= sent */
} us_sdnotify;

/* Read the environment and start the watchdog pings on `loop`. */
void us_sd_start(us_sdnotify *s, uv_loop_t *loop);
/* Send STATUS=status if it differs from the last one. */
void us_sd_status(us_sdnotify *s, const char *status);
void us_sd_ready(us_sdnotify *s);    /* READY=1 (once) */
void us_sd_stopping(us_sdnotify *s); /* STOPPING=1 (once) */
/* Stop the pings and close the timer (before the loop closes). */
void us_sd_close(us_sdnotify *s);

#endif
