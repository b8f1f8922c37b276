/* test_supervisor.c — real process groups started, observed, stopped and killed. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "node/privilege.h"
#include "node/supervisor.h"
#include "helpers.h"

typedef struct fixture {
    uv_loop_t loop;
    char dir[64];
} fixture;

typedef struct result {
    bool done;
    int status;
    int calls;
    pid_t pgid;
    char leader_state; /* state of the leader seen from inside on_exit */
    int64_t t_exit;
} result;

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static char proc_state(pid_t pid)
{
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *s = strrchr(buf, ')');
    return s && s[1] ? s[2] : 0;
}

static unsigned long long proc_starttime(pid_t pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *s = strrchr(buf, ')') + 2;
    for (int field = 3; field < 22; field++)
        s = strchr(s, ' ') + 1;
    return strtoull(s, NULL, 10);
}

/* The text of path (NULL if unreadable), kept until the next call. */
static const char *slurp(const char *path)
{
    static char *last;
    free(last);
    last = ut_read_file(path, NULL);
    return last;
}

static void on_exit_cb(us_proc *p, int status, void *data)
{
    result *r = data;
    r->done = true;
    r->status = status;
    r->calls++;
    r->pgid = us_proc_pid(p);
    r->leader_state = proc_state(r->pgid);
    r->t_exit = mono_ms();
    us_proc_kill(p, SIGKILL); /* harmless from inside on_exit: the leader is not reaped yet */
}

static bool is_done(const void *arg)
{
    return ((const result *)arg)->done;
}

typedef struct file_has {
    const char *path, *text;
} file_has;

static bool file_contains(const void *arg)
{
    const file_has *fh = arg;
    const char *s = slurp(fh->path);
    return s && strstr(s, fh->text);
}

static bool wait_group_gone(pid_t pgid, int ms)
{
    int64_t deadline = mono_ms() + ms;
    while (us_pgrp_alive(pgid) && mono_ms() < deadline)
        ut_sleep_ms(1);
    return !us_pgrp_alive(pgid);
}

/* Reap what reparented to us (we are a subreaper) from a dead group. */
static void reap_group(pid_t pgid)
{
    assert_true(wait_group_gone(pgid, 2000));
    while (waitpid(-pgid, NULL, WNOHANG) > 0)
        ;
}

static void path_in(const fixture *f, const char *name, char *out)
{
    snprintf(out, PATH_MAX, "%s/%s", f->dir, name);
}

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    if (!ut_mkdtemp(f->dir, sizeof f->dir, "sup") || uv_loop_init(&f->loop) != 0)
        return -1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    /* Every us_proc must have freed its handles: the loop closes only if none is left. */
    uv_run(&f->loop, UV_RUN_DEFAULT);
    int rc = uv_loop_close(&f->loop);
    ut_rmtree(f->dir);
    free(f);
    return rc == 0 ? 0 : -1;
}

static us_proc *spawn(fixture *f, const us_proc_opts *o)
{
    us_proc *p = NULL;
    int rc = us_proc_spawn(&f->loop, o, &p);
    assert_int_equal(rc, 0);
    assert_non_null(p);
    return p;
}

static void test_exit_status_and_log(void **state)
{
    fixture *f = *state;
    char log[PATH_MAX];
    path_in(f, "svc.log", log);
    assert_int_equal(ut_write_file(log, "earlier\n"), 0);
    result r = {0};
    us_proc_opts o = {.cmd = "echo hi; echo oops >&2; exit 3",
                      .log_path = log,
                      .on_exit = on_exit_cb,
                      .data = &r};
    us_proc *p = spawn(f, &o);
    pid_t pid = us_proc_pid(p);
    assert_true(ut_run_until(&f->loop, is_done, &r, 5000));
    assert_int_equal(r.status, 3);
    assert_int_equal(r.calls, 1);
    assert_int_equal(r.pgid, pid);
    /* on_exit runs before the leader is reaped; afterwards it is. */
    assert_int_equal(r.leader_state, 'Z');
    assert_int_equal(waitpid(pid, NULL, WNOHANG), -1);
    assert_int_equal(errno, ECHILD);
    assert_string_equal(slurp(log), "earlier\nhi\noops\n");
    struct stat sb;
    assert_int_equal(stat(log, &sb), 0);
}

/* A child starts at the nice value set with us_proc_child_nice, not at the spawning thread's (an
 * agent's loop runs above its children while it is a voter). Upwards, so that no privilege is
 * needed. */
static void test_child_nice(void **state)
{
    fixture *f = *state;
    char log[PATH_MAX];
    path_in(f, "nice.log", log);
    errno = 0;
    int own = getpriority(PRIO_PROCESS, 0);
    assert_int_equal(errno, 0);
    int want = own + 3 > 19 ? 19 : own + 3;
    us_proc_child_nice(want);
    result r = {0};
    us_proc_opts o = {.cmd = "exec awk '{ print $19 }' /proc/self/stat",
                      .log_path = log,
                      .on_exit = on_exit_cb,
                      .data = &r};
    spawn(f, &o);
    assert_true(ut_run_until(&f->loop, is_done, &r, 5000));
    assert_int_equal(r.status, 0);
    char expect[16];
    snprintf(expect, sizeof expect, "%d\n", want);
    assert_string_equal(slurp(log), expect);
    assert_int_equal(getpriority(PRIO_PROCESS, 0), own); /* ours is untouched */
    us_proc_child_nice(own);
}

static void test_killed_by_signal_status(void **state)
{
    fixture *f = *state;
    result r = {0};
    us_proc_opts o = {.cmd = "kill -USR1 $$; sleep 5", .on_exit = on_exit_cb, .data = &r};
    spawn(f, &o);
    assert_true(ut_run_until(&f->loop, is_done, &r, 5000));
    assert_int_equal(r.status, 128 + SIGUSR1);
}

static void test_env_cwd_stdin_fds_signals(void **state)
{
    fixture *f = *state;
    char log[PATH_MAX];
    path_in(f, "env.log", log);
    setenv("US_T_OVERRIDE", "old", 1);
    setenv("US_T_KEEP", "kept", 1);
    /* The agent's mask and ignored signals must not leak into services. (Checked on an exec'd
     * command: dash itself blocks every signal while it waits for a child.) */
    sigset_t set, old;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigprocmask(SIG_BLOCK, &set, &old);
    struct sigaction ign = {.sa_handler = SIG_IGN}, old_usr2;
    sigaction(SIGUSR2, &ign, &old_usr2);
    /* A descriptor without CLOEXEC must not reach the service either. */
    int leak = open("/dev/null", O_RDONLY);
    assert_true(leak >= 0);

    /* `env` is the whole environment: nothing of the agent's (US_T_KEEP) reaches the child. */
    const char *env[] = {"US_T_OVERRIDE=new", "US_T_EXTRA=x y", NULL};
    result r = {0};
    us_proc_opts o = {
        .cmd =
            "echo \"$US_T_OVERRIDE|$US_T_KEEP|$US_T_EXTRA\"; env | grep -c '^US_T_OVERRIDE='; "
            "pwd; if read x; then echo stdin-data; else echo stdin-eof; fi; "
            "ls /proc/$$/fd | tr '\\n' ' '; echo; exec grep -E '^Sig(Blk|Ign)' /proc/self/status",
        .env = env,
        .cwd = f->dir,
        .log_path = log,
        .on_exit = on_exit_cb,
        .data = &r};
    spawn(f, &o);
    close(leak);
    sigprocmask(SIG_SETMASK, &old, NULL);
    sigaction(SIGUSR2, &old_usr2, NULL);
    assert_true(ut_run_until(&f->loop, is_done, &r, 5000));
    assert_int_equal(r.status, 0);
    char want[1024];
    snprintf(want, sizeof want,
             "new||x y\n1\n%s\nstdin-eof\n0 1 2 \nSigBlk:\t0000000000000000\n"
             "SigIgn:\t0000000000000000\n",
             f->dir);
    assert_string_equal(slurp(log), want);
    unsetenv("US_T_OVERRIDE");
    unsetenv("US_T_KEEP");
}

/* Credentials: setgroups, setgid, setuid before exec; the log file opened by the agent stays
 * writable; a stdin file the user could not open itself is still read. Needs root. */
static void test_run_as_user(void **state)
{
    fixture *f = *state;
    if (geteuid() != 0) {
        print_message("SKIPPED: switching users needs root (running as uid %d)\n", (int)geteuid());
        skip();
    }
    us_cred cred;
    char why[256];
    assert_int_equal(us_cred_resolve("nobody", "", "n1", &cred, why, sizeof why), 0);
    assert_true(cred.drop && cred.set_user);
    char log[PATH_MAX], in[PATH_MAX];
    path_in(f, "as-user.log", log);
    path_in(f, "stdin.txt", in);
    assert_int_equal(ut_write_file(in, "secret-input\n"), 0);
    chmod(in, 0600);
    chmod(f->dir, 0700); /* neither readable nor searchable for nobody */
    us_env_spec spec = us_env_spec_for(NULL, &cred, NULL);
    char **env = us_env_build(&spec);
    assert_non_null(env);
    result r = {0};
    us_proc_opts o = {.cmd = "grep -E '^(Uid|Gid|Groups):' /proc/self/status | tr '\\t' ' '; "
                             "read x; echo \"$x|$HOME|$USER|$LOGNAME\"; echo $PATH",
                      .env = (const char *const *)env,
                      .cred = &cred,
                      .cwd = f->dir,
                      .log_path = log,
                      .stdin_path = in,
                      .on_exit = on_exit_cb,
                      .data = &r};
    spawn(f, &o);
    free(env);
    assert_true(ut_run_until(&f->loop, is_done, &r, 5000));
    assert_int_equal(r.status, 0);
    char want[PATH_MAX + 1024];
    snprintf(want, sizeof want,
             "Uid: %d %d %d %d\nGid: %d %d %d %d\nGroups: %d \n"
             "secret-input|%s|nobody|nobody\n%s\n",
             (int)cred.uid, (int)cred.uid, (int)cred.uid, (int)cred.uid, (int)cred.gid,
             (int)cred.gid, (int)cred.gid, (int)cred.gid, (int)cred.gid, cred.home, US_SAFE_PATH);
    assert_string_equal(slurp(log), want);

    /* A group alone: uid stays, the group and no supplementary group of the agent's. */
    assert_int_equal(us_cred_resolve("", "nogroup", "n1", &cred, why, sizeof why), 0);
    assert_true(cred.drop && !cred.set_user);
    memset(&r, 0, sizeof r);
    path_in(f, "as-group.log", log);
    us_proc_opts g = {.cmd = "grep -E '^(Uid|Gid|Groups):' /proc/self/status | tr '\\t' ' '",
                      .cred = &cred,
                      .log_path = log,
                      .on_exit = on_exit_cb,
                      .data = &r};
    spawn(f, &g);
    assert_true(ut_run_until(&f->loop, is_done, &r, 5000));
    assert_int_equal(r.status, 0);
    snprintf(want, sizeof want, "Uid: 0 0 0 0\nGid: %d %d %d %d\nGroups: %d \n", (int)cred.gid,
             (int)cred.gid, (int)cred.gid, (int)cred.gid, (int)cred.gid);
    assert_string_equal(slurp(log), want);
}

static void test_bad_spawn_arguments(void **state)
{
    fixture *f = *state;
    result r = {0};
    us_proc *p = (us_proc *)&r;
    us_proc_opts o = {.cmd = "true", .cwd = "/nonexistent/dir", .on_exit = on_exit_cb, .data = &r};
    assert_int_equal(us_proc_spawn(&f->loop, &o, &p), -ENOENT);
    assert_null(p);
    o.cwd = "/etc/hostname";
    assert_int_equal(us_proc_spawn(&f->loop, &o, &p), -ENOTDIR);
    o.cwd = NULL;
    o.log_path = "/nonexistent/dir/log";
    assert_int_equal(us_proc_spawn(&f->loop, &o, &p), -ENOENT);
    o.log_path = NULL;
    o.on_exit = NULL;
    assert_int_equal(us_proc_spawn(&f->loop, &o, &p), -EINVAL);
    assert_false(r.done);
    /* Nothing was left running. */
    assert_int_equal(waitpid(-1, NULL, WNOHANG), -1);
}

static void test_timeout(void **state)
{
    fixture *f = *state;
    result r = {0};
    us_proc_opts o = {.cmd = "sleep 100", .timeout_ms = 100, .on_exit = on_exit_cb, .data = &r};
    int64_t t0 = mono_ms();
    us_proc *p = spawn(f, &o);
    pid_t pgid = us_proc_pid(p);
    assert_true(ut_run_until(&f->loop, is_done, &r, 5000));
    assert_int_equal(r.status, US_PROC_TIMEOUT);
    assert_true(r.t_exit - t0 >= 95);
    assert_true(r.t_exit - t0 < 2000);
    reap_group(pgid);
}

static void test_stop_grace_kills_term_ignorer(void **state)
{
    fixture *f = *state;
    char log[PATH_MAX];
    path_in(f, "trap.log", log);
    result r = {0};
    us_proc_opts o = {.cmd = "trap '' TERM; echo ready; sleep 100",
                      .log_path = log,
                      .on_exit = on_exit_cb,
                      .data = &r};
    us_proc *p = spawn(f, &o);
    pid_t pgid = us_proc_pid(p);
    file_has fh = {log, "ready"};
    assert_true(ut_run_until(&f->loop, file_contains, &fh, 5000));
    int64_t t0 = mono_ms();
    us_proc_stop(p, 200);
    assert_true(ut_run_until(&f->loop, is_done, &r, 5000));
    assert_int_equal(r.status, 128 + SIGKILL);
    assert_true(r.t_exit - t0 >= 195);
    assert_true(r.t_exit - t0 < 2000);
    reap_group(pgid);
}

static pid_t read_pid_line(const char *path)
{
    const char *s = slurp(path);
    assert_non_null(s);
    return (pid_t)atoi(s);
}

static void test_stop_kills_whole_group(void **state)
{
    fixture *f = *state;
    char log[PATH_MAX];
    path_in(f, "group.log", log);
    result r = {0};
    us_proc_opts o = {.cmd = "sleep 100 & echo $!; sleep 100",
                      .log_path = log,
                      .on_exit = on_exit_cb,
                      .data = &r};
    us_proc *p = spawn(f, &o);
    pid_t pgid = us_proc_pid(p);
    file_has fh = {log, "\n"};
    assert_true(ut_run_until(&f->loop, file_contains, &fh, 5000));
    pid_t bg = read_pid_line(log);
    assert_true(bg > 0);
    assert_int_equal(getpgid(bg), pgid);
    int64_t t0 = mono_ms();
    us_proc_stop(p, 5000);
    assert_true(ut_run_until(&f->loop, is_done, &r, 5000));
    assert_int_equal(r.status, 128 + SIGTERM);
    assert_true(r.t_exit - t0 < 1000);
    assert_true(wait_group_gone(pgid, 1000));
    /* The background sleep was reaped by the shell if it died first, else by us (subreaper). */
    int st;
    pid_t w = waitpid(bg, &st, 0);
    assert_true(w == bg ? WIFSIGNALED(st) : errno == ECHILD);
    assert_int_equal(kill(bg, 0), -1);
    reap_group(pgid);
}

static void test_leader_exit_kills_rest_of_group(void **state)
{
    fixture *f = *state;
    char log[PATH_MAX];
    path_in(f, "leader.log", log);
    result r = {0};
    us_proc_opts o = {.cmd = "trap '' TERM; sleep 100 & echo $!; exit 5",
                      .log_path = log,
                      .on_exit = on_exit_cb,
                      .data = &r};
    us_proc *p = spawn(f, &o);
    pid_t pgid = us_proc_pid(p);
    assert_true(ut_run_until(&f->loop, is_done, &r, 5000));
    assert_int_equal(r.status, 5);
    pid_t bg = read_pid_line(log);
    assert_true(bg > 0);
    assert_true(wait_group_gone(pgid, 1000));
    int st;
    assert_int_equal(waitpid(bg, &st, 0), bg);
    assert_true(WIFSIGNALED(st));
    assert_int_equal(WTERMSIG(st), SIGKILL);
    reap_group(pgid);
}

typedef struct before_ctx {
    const char *marker;
    pid_t pgid;
    int calls;
    bool marker_absent, group_exists;
} before_ctx;

static result before_result;

static void before_exec(pid_t pgid, void *data)
{
    before_ctx *c = data;
    c->calls++;
    c->pgid = pgid;
    c->group_exists = getpgid(pgid) == pgid;
    /* Give a child that (wrongly) did not wait time to run its command. */
    ut_sleep_ms(50);
    c->marker_absent = access(c->marker, F_OK) != 0;
}

static void before_exit_cb(us_proc *p, int status, void *data)
{
    (void)data;
    on_exit_cb(p, status, &before_result);
}

static void test_before_exec_runs_first(void **state)
{
    fixture *f = *state;
    char marker[PATH_MAX];
    path_in(f, "marker", marker);
    before_ctx c = {.marker = marker};
    memset(&before_result, 0, sizeof before_result);
    us_proc_opts o = {.cmd = "touch marker",
                      .cwd = f->dir,
                      .before_exec = before_exec,
                      .on_exit = before_exit_cb,
                      .data = &c};
    us_proc *p = spawn(f, &o);
    assert_int_equal(c.calls, 1);
    assert_int_equal(c.pgid, us_proc_pid(p));
    assert_true(c.group_exists);
    assert_true(c.marker_absent);
    assert_true(ut_run_until(&f->loop, is_done, &before_result, 5000));
    assert_int_equal(before_result.status, 0);
    assert_int_equal(access(marker, F_OK), 0);
}

static void test_pidfile_written_and_removed(void **state)
{
    fixture *f = *state;
    char log[PATH_MAX], pidfile[PATH_MAX];
    path_in(f, "pf.log", log);
    path_in(f, "svc.pid", pidfile);
    result r = {0};
    us_proc_opts o = {.cmd = "echo ready; sleep 100",
                      .log_path = log,
                      .pidfile = pidfile,
                      .on_exit = on_exit_cb,
                      .data = &r};
    us_proc *p = spawn(f, &o);
    pid_t pgid = us_proc_pid(p);
    char want[64];
    snprintf(want, sizeof want, "%d %llu\n", (int)pgid, proc_starttime(pgid));
    assert_string_equal(slurp(pidfile), want);
    file_has fh = {log, "ready"};
    assert_true(ut_run_until(&f->loop, file_contains, &fh, 5000));
    /* exec does not change the start time the pidfile records */
    assert_string_equal(slurp(pidfile), want);
    us_proc_kill(p, SIGKILL);
    assert_true(ut_run_until(&f->loop, is_done, &r, 5000));
    assert_int_equal(r.status, 128 + SIGKILL);
    assert_int_equal(access(pidfile, F_OK), -1);
    reap_group(pgid);
}

/* A group as a crashed agent would leave it: not ours to track, only a pidfile names it. */
static pid_t start_foreign_group(const char *cmd)
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

/* us_pgrps_alive: several groups in one look, each as us_pgrp_alive would say: a running leader;
 * a zombie leader (unreaped, as a dead agent's children are until init reaps them) with a live
 * member found through /proc; a zombie leader alone (gone); pgid <= 1 (never). */
static void test_pgrps_alive_at_once(void **state)
{
    (void)state;
    pid_t with_member = start_foreign_group("sleep 100 & exit 0");
    pid_t running = start_foreign_group("sleep 100");
    pid_t zombie = start_foreign_group("exit 0");
    siginfo_t si;
    /* Wait for the leaders' exits without reaping them. */
    assert_int_equal(waitid(P_PID, (id_t)with_member, &si, WEXITED | WNOWAIT), 0);
    assert_int_equal(waitid(P_PID, (id_t)zombie, &si, WEXITED | WNOWAIT), 0);
    pid_t pgids[] = {with_member, running, zombie, 1};
    bool alive[4];
    assert_int_equal(us_pgrps_alive(pgids, 4, alive), 2);
    assert_true(alive[0]);
    assert_true(alive[1]);
    assert_false(alive[2]);
    assert_false(alive[3]);
    for (int i = 0; i < 4; i++)
        assert_int_equal(us_pgrp_alive(pgids[i]), alive[i]);

    kill(-with_member, SIGKILL);
    kill(-running, SIGKILL);
    int64_t deadline = mono_ms() + 2000;
    while (us_pgrps_alive(pgids, 4, alive) > 0 && mono_ms() < deadline)
        usleep(1000);
    assert_int_equal(us_pgrps_alive(pgids, 4, alive), 0);
    reap_group(with_member);
    reap_group(running);
    reap_group(zombie);
}

static void test_kill_stale(void **state)
{
    fixture *f = *state;
    char pidfile[PATH_MAX], line[64];
    path_in(f, "stale.pid", pidfile);

    assert_false(us_proc_kill_stale(pidfile)); /* no file */

    assert_int_equal(ut_write_file(pidfile, "garbage\n"), 0);
    assert_false(us_proc_kill_stale(pidfile));
    assert_int_equal(access(pidfile, F_OK), -1);

    pid_t pgid = start_foreign_group("sleep 100 & sleep 100");
    /* Wrong start time: the pid was reused by someone else, who must be left alone. */
    snprintf(line, sizeof line, "%d %llu\n", (int)pgid, proc_starttime(pgid) + 1);
    assert_int_equal(ut_write_file(pidfile, line), 0);
    assert_false(us_proc_kill_stale(pidfile));
    assert_int_equal(access(pidfile, F_OK), -1);
    assert_true(us_pgrp_alive(pgid));

    snprintf(line, sizeof line, "%d %llu\n", (int)pgid, proc_starttime(pgid));
    assert_int_equal(ut_write_file(pidfile, line), 0);
    int64_t t0 = mono_ms();
    assert_true(us_proc_kill_stale(pidfile));
    assert_true(mono_ms() - t0 < 1000);
    /* Gone on return (zombies count as gone: our leader is one until we reap it). */
    assert_false(us_pgrp_alive(pgid));
    assert_int_equal(access(pidfile, F_OK), -1);
    int st;
    assert_int_equal(waitpid(pgid, &st, 0), pgid);
    assert_true(WIFSIGNALED(st));
    assert_int_equal(WTERMSIG(st), SIGKILL);
    reap_group(pgid);
}

/* The agent dies (kill -9) with a service running: the direct child dies with it (pdeathsig). */
static void test_child_dies_with_agent(void **state)
{
    (void)state;
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    pid_t agent = fork();
    assert_true(agent >= 0);
    if (agent == 0) {
        uv_loop_t loop;
        uv_loop_init(&loop);
        result r = {0};
        us_proc_opts o = {.cmd = "sleep 100", .on_exit = on_exit_cb, .data = &r};
        us_proc *p;
        if (us_proc_spawn(&loop, &o, &p) != 0)
            _exit(1);
        pid_t pgid = us_proc_pid(p);
        (void)!write(fds[1], &pgid, sizeof pgid);
        uv_run(&loop, UV_RUN_DEFAULT);
        _exit(2);
    }
    close(fds[1]);
    pid_t pgid = 0;
    assert_int_equal(read(fds[0], &pgid, sizeof pgid), (ssize_t)sizeof pgid);
    close(fds[0]);
    /* Let the child exec: pdeathsig must survive execve. */
    int64_t deadline = mono_ms() + 2000;
    char exe[PATH_MAX] = "", path[64];
    snprintf(path, sizeof path, "/proc/%d/exe", (int)pgid);
    while (mono_ms() < deadline) {
        ssize_t n = readlink(path, exe, sizeof exe - 1);
        exe[n > 0 ? n : 0] = '\0';
        if (strstr(exe, "sh") || strstr(exe, "sleep"))
            break;
        ut_sleep_ms(1);
    }
    int64_t t0 = mono_ms();
    kill(agent, SIGKILL);
    int st;
    assert_int_equal(waitpid(agent, &st, 0), agent);
    deadline = t0 + 1000;
    char s;
    while ((s = proc_state(pgid)) && s != 'Z' && mono_ms() < deadline)
        ut_sleep_ms(1);
    int64_t took = mono_ms() - t0;
    print_message("      service leader gone %lld ms after kill -9 of the agent\n",
                  (long long)took);
    assert_true(took < 1000);
    kill(-pgid, SIGKILL); /* the shell's own children are the guardian's job */
    reap_group(pgid);
}

/* A planned restart: a detachable service outlives its agent (no pdeathsig), and the next agent
 * adopts it from its pidfile, only with the right pgid and start time; its exit is seen through
 * the pidfd although it is not our child (status unknown: 255), and its pidfile goes. */
static void test_detachable_outlives_agent_and_is_adopted(void **state)
{
    fixture *f = *state;
    char pidfile[PATH_MAX], bad[PATH_MAX], line[64];
    path_in(f, "web.pid", pidfile);
    path_in(f, "bad.pid", bad);
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    pid_t agent = fork();
    assert_true(agent >= 0);
    if (agent == 0) {
        uv_loop_t loop;
        uv_loop_init(&loop);
        result r = {0};
        us_proc_opts o = {.cmd = "sleep 100 & exec sleep 100",
                          .pidfile = pidfile,
                          .detachable = true,
                          .on_exit = on_exit_cb,
                          .data = &r};
        us_proc *p;
        if (us_proc_spawn(&loop, &o, &p) != 0)
            _exit(1);
        pid_t pgid = us_proc_pid(p);
        (void)!write(fds[1], &pgid, sizeof pgid);
        us_proc_release(p); /* the agent lets go and exits at once */
        _exit(75);
    }
    close(fds[1]);
    pid_t pgid = 0;
    assert_int_equal(read(fds[0], &pgid, sizeof pgid), (ssize_t)sizeof pgid);
    close(fds[0]);
    int st;
    assert_int_equal(waitpid(agent, &st, 0), agent);
    assert_int_equal(WEXITSTATUS(st), 75);
    ut_sleep_ms(100);
    assert_true(us_pgrp_alive(pgid)); /* survived its agent */

    result r = {0};
    us_proc *p = NULL;
    /* Not the group the file names; a file with another start time (a reused pid). */
    assert_int_equal(us_proc_adopt(&f->loop, pidfile, pgid + 1, on_exit_cb, &r, &p), -ESRCH);
    snprintf(line, sizeof line, "%d %llu\n", (int)pgid, proc_starttime(pgid) + 1);
    assert_int_equal(ut_write_file(bad, line), 0);
    assert_int_equal(us_proc_adopt(&f->loop, bad, pgid, on_exit_cb, &r, &p), -ESRCH);
    assert_null(p);
    assert_int_equal(us_proc_adopt(&f->loop, NULL, pgid, on_exit_cb, &r, &p), -EINVAL);

    assert_int_equal(us_proc_adopt(&f->loop, pidfile, pgid, on_exit_cb, &r, &p), 0);
    assert_int_equal(us_proc_pid(p), pgid);
    ut_sleep_ms(50);
    uv_run(&f->loop, UV_RUN_NOWAIT);
    assert_false(r.done);
    /* The leader dies: the rest of the group goes with it, as for our own children. */
    kill(pgid, SIGKILL);
    assert_true(ut_run_until(&f->loop, is_done, &r, 5000));
    assert_int_equal(r.calls, 1);
    assert_int_equal(r.status, 255);
    assert_int_equal(access(pidfile, F_OK), -1);
    reap_group(pgid);
}

/* A before_exec that reports the pgid and then dies as if by kill -9. */
static void die_in_before_exec(pid_t pgid, void *data)
{
    int fd = *(int *)data;
    (void)!write(fd, &pgid, sizeof pgid);
    raise(SIGKILL);
}

/* The agent dies inside before_exec: the child must never run the command. */
static void test_agent_dies_before_release(void **state)
{
    fixture *f = *state;
    char marker[PATH_MAX];
    path_in(f, "never", marker);
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    pid_t agent = fork();
    assert_true(agent >= 0);
    if (agent == 0) {
        uv_loop_t loop;
        uv_loop_init(&loop);
        us_proc_opts o = {.cmd = "touch never",
                          .cwd = f->dir,
                          .before_exec = die_in_before_exec,
                          .on_exit = on_exit_cb,
                          .data = &fds[1]};
        us_proc *p;
        us_proc_spawn(&loop, &o, &p);
        _exit(3);
    }
    close(fds[1]);
    pid_t pgid = 0;
    assert_int_equal(read(fds[0], &pgid, sizeof pgid), (ssize_t)sizeof pgid);
    close(fds[0]);
    int st;
    assert_int_equal(waitpid(agent, &st, 0), agent);
    assert_true(WIFSIGNALED(st));
    reap_group(pgid);
    int rc = waitpid(pgid, &st, 0); /* reparented to us */
    assert_true(rc == pgid || (rc == -1 && errno == ECHILD));
    assert_int_equal(access(marker, F_OK), -1);
}

int main(void)
{
    /* Orphans of the groups under test reparent to us, so that the tests can reap them. */
    prctl(PR_SET_CHILD_SUBREAPER, 1);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_exit_status_and_log, setup, teardown),
        cmocka_unit_test_setup_teardown(test_child_nice, setup, teardown),
        cmocka_unit_test_setup_teardown(test_killed_by_signal_status, setup, teardown),
        cmocka_unit_test_setup_teardown(test_env_cwd_stdin_fds_signals, setup, teardown),
        cmocka_unit_test_setup_teardown(test_run_as_user, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_spawn_arguments, setup, teardown),
        cmocka_unit_test_setup_teardown(test_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stop_grace_kills_term_ignorer, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stop_kills_whole_group, setup, teardown),
        cmocka_unit_test_setup_teardown(test_leader_exit_kills_rest_of_group, setup, teardown),
        cmocka_unit_test_setup_teardown(test_before_exec_runs_first, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pidfile_written_and_removed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_detachable_outlives_agent_and_is_adopted, setup,
                                        teardown),
        cmocka_unit_test(test_pgrps_alive_at_once),
        cmocka_unit_test_setup_teardown(test_kill_stale, setup, teardown),
        cmocka_unit_test_setup_teardown(test_child_dies_with_agent, setup, teardown),
        cmocka_unit_test_setup_teardown(test_agent_dies_before_release, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
