/* check.h — health checks of one service instance, run on the caller's libuv loop (no threads).
 *
 * Promises:
 *  - A probe runs every check of the service concurrently, each limited to check_timeout_ms; it
 *    passes when all pass. The first probe starts at once, each next one check_interval_ms after
 *    the previous one started. Never two probes at once: a beat that finds the previous probe
 *    still running is taken as soon as that probe ends (late, not doubled).
 *  - http: TCP connect to host:port, "GET PATH HTTP/1.0" with Host, User-Agent: understudy-check
 *    and Connection: close; passes iff the status is in [check_status_min, check_status_max].
 *    tcp: passes iff the connect succeeds. exec: `/bin/sh -c CMD` in its own process group
 *    (supervisor.h), passes iff it exits 0; on timeout its whole group is SIGKILLed.
 *  - `rise` passes in a row make the instance HEALTHY, `fall` counted failures in a row
 *    UNHEALTHY (us_health_step). After start, failures count only once a probe passed or
 *    check_grace_ms went by; uncounted failures still bump `failed` and set `cause`.
 *  - cause: "check TEXT failed N/FALL: WHY" (N = fail_run; the first failing check in definition
 *    order), e.g. "check http://127.0.0.1:8080/healthz failed 3/3: connection refused". WHY is
 *    "connection refused", "timed out after 300 ms", "HTTP status 503", "malformed HTTP
 *    response", "connection closed before the status line", "exit status 3", "timed out after
 *    300 ms (killed)", or a libuv error text.
 *  - The callback fires on the loop only when `health` changes; it may stop the checker.
 */
#ifndef US_CHECK_H
#define US_CHECK_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "core/model.h"

typedef struct us_checker us_checker;
/* Called on the loop when `health` changes (and only then). */
typedef void (*us_checker_cb)(us_checker *c, void *data);

typedef struct us_check_status {
    us_health health;          /* UNKNOWN until rise passes or fall failures in a row */
    int64_t last_latency_ms;   /* duration of the last completed probe (slowest check), -1 none */
    uint64_t probes, failed;   /* probes completed and failed since start */
    int ok_run, fail_run;      /* passes / counted failures in a row */
    char cause[US_REASON_MAX]; /* last failure (format above); "" if none yet */
} us_check_status;

/* Start probing the checks of `d` (copied: the definition may change later) every
 * check_interval_ms, first probe immediately. `env` (NULL-terminated, may be NULL = PATH and LANG
 * only) is the whole environment of exec checks, which run as `cred` (NULL = as the agent;
 * privilege.h); exec output is appended to `log_path` (may be NULL = /dev/null); exec checks run
 * in `cwd` (NULL = the agent's). cwd, env, cred and log_path are copied.
 * Returns NULL when d->n_checks == 0 (or out of memory). */
struct us_cred;
us_checker *us_checker_start(uv_loop_t *loop, const us_service_def *d, const char *cwd,
                             const char *const *env, const struct us_cred *cred,
                             const char *log_path, us_checker_cb cb, void *data);

/* Stop: no callback after this returns; memory is released once libuv handles closed.
 * A running exec check's process group is killed. */
void us_checker_stop(us_checker *c);

const us_check_status *us_checker_status(const us_checker *c);

/* Process-wide observer of every completed probe of every checker (for metrics): the service
 * name, whether the probe passed, and its duration in seconds (from its start until its last
 * check ended). Called on the loop; NULL removes it. */
typedef void (*us_probe_observer)(const char *service, bool pass, double seconds, void *data);
void us_check_set_observer(us_probe_observer fn, void *data);

/* Pure rise/fall step, exposed for tests: update health and the runs for one probe result.
 * pass: ok_run++, fail_run = 0, HEALTHY once ok_run >= rise. fail: fail_run++, ok_run = 0,
 * UNHEALTHY once fail_run >= fall. Otherwise `cur` is kept. */
us_health us_health_step(us_health cur, int *ok_run, int *fail_run, bool pass, int rise, int fall);

#endif
