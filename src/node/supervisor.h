/* supervisor.h — service processes and hooks, each in a process group of its own, driven by libuv.
 *
 * Promises:
 *  - A child runs `/bin/sh -c CMD` in a new process group (pgid == pid) with PR_SET_PDEATHSIG
 *    SIGKILL (unless `detachable`), stdin from /dev/null (or `stdin_path`), stdout+stderr appended
 * to `log_path` (opened by the agent, before any privilege is dropped), and exactly the environment
 * `env` (privilege.h builds it; NULL = PATH and LANG only): nothing of the agent's own environment.
 *  - With `cred` (drop set), the child calls setgroups, setgid, then setuid, each checked (and
 *    verified: the ids took, root cannot be regained), after chdir and before exec; any failure
 *    is written to the log ("understudy: setuid nobody: EPERM") and the child exits 127.
 *  - The child does not exec before `before_exec(pgid)` has returned in the parent: that is where
 *    the agent registers the group with the guardian, so no instance can run unguarded.
 *  - When the group leader exits, the rest of the group is SIGKILLed (an instance is its whole
 *    group) and `on_exit` fires once, on the loop thread. Exit is observed through a pidfd, so the
 *    supervisor installs no SIGCHLD handler. The leader is reaped only after on_exit returns, so
 *    the pgid cannot be reused while on_exit runs (untrack it from the guardian there).
 *  - `pidfile` (optional) holds "PGID STARTTIME" while the group runs, so that a restarted
 *    agent can kill what a crashed one left behind (us_proc_kill_stale).
 */
#ifndef US_SUPERVISOR_H
#define US_SUPERVISOR_H

#include <stdbool.h>
#include <sys/types.h>
#include <uv.h>

/* Exit status reported when timeout_ms passed and the group was killed. */
#define US_PROC_TIMEOUT (-2)

typedef struct us_proc us_proc;

/* status: exit code 0..255, 128+signal when killed by a signal, or US_PROC_TIMEOUT. */
typedef void (*us_proc_exit_cb)(us_proc *p, int status, void *data);

typedef struct us_proc_opts {
    const char *cmd;            /* run with /bin/sh -c */
    const char *const *env;     /* the whole environment, "KEY=VALUE" strings, NULL-terminated */
    const struct us_cred *cred; /* NULL = run as the agent (privilege.h) */
    const char *cwd;            /* NULL = the agent's */
    const char *log_path;       /* NULL = /dev/null */
    const char *out_path;       /* NULL = standard output goes to log_path too; else it goes here
                                   (created or truncated by the agent), standard error to log_path */
    const char *stdin_path;     /* opened by the agent; NULL = /dev/null */
    const char *pidfile;        /* NULL = none */
    int timeout_ms;             /* 0 = none */
    /* No PR_SET_PDEATHSIG: the group may outlive the agent (a planned restart hands it to the
     * next agent); the guardian, which kills it when the agent dies, must track it. */
    bool detachable;
    void (*before_exec)(pid_t pgid, void *data); /* may be NULL */
    us_proc_exit_cb on_exit;                     /* required */
    void *data;
} us_proc_opts;

/* Start a process group. 0 on success, -errno on failure (nothing left running). */
int us_proc_spawn(uv_loop_t *loop, const us_proc_opts *o, us_proc **out);

pid_t us_proc_pid(const us_proc *p); /* pid of the group leader == pgid */

/* Signal the whole group. */
void us_proc_kill(us_proc *p, int sig);

/* SIGTERM the group, SIGKILL it after grace_ms if still there. on_exit fires as usual. */
void us_proc_stop(us_proc *p, int grace_ms);

/* After on_exit returns the supervisor frees `p`. Before that, `data` may be detached: */
void us_proc_set_data(us_proc *p, void *data);

/* Take over a group an earlier agent of this node started (a planned restart): only if
 * `pidfile` names `pgid` and the leader still runs with the start time recorded there. on_exit
 * fires once when the leader exits, with status 255 (its status went to its parent); the rest of
 * the group is killed then, as for our own children. 0, or -errno (-ESRCH: not that group). */
int us_proc_adopt(uv_loop_t *loop, const char *pidfile, pid_t pgid, us_proc_exit_cb on_exit,
                  void *data, us_proc **out);

/* Let go of `p` without touching the group (a planned restart leaves it to the next agent): no
 * on_exit, no signal, the pidfile stays; `p` is freed once its handles closed. */
void us_proc_release(us_proc *p);

/* Every process spawned from now on starts at this nice value, whatever the spawning thread's
 * (the agent raises its own priority while it is a voter: its children must not inherit that).
 * Call once at startup with the agent's own nice value. */
void us_proc_child_nice(int nice);

/* Kill a group left behind by an earlier agent (pidfile exists, and the process it names still
 * has the recorded start time). Removes the pidfile. Returns true if something was killed. */
bool us_proc_kill_stale(const char *pidfile);

/* Does group `pgid` still have a process that is not a zombie? Allocation-free (the guardian
 * uses it). */
bool us_pgrp_alive(pid_t pgid);
/* The same for n groups at once, into alive[0..n): one walk over /proc for all the groups whose
 * leader is a zombie or gone, not one per group. Allocation-free; returns how many are alive. */
int us_pgrps_alive(const pid_t *pgids, int n, bool *alive);

#endif
