/* supervisor.c — see supervisor.h.
 *
 * Own fork+exec rather than uv_spawn: uv_spawn cannot set PR_SET_PDEATHSIG, and it cannot hold
 * the child back until the parent has registered the group with the guardian.
 */
#include "node/supervisor.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <sys/syscall.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/pidfd.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <grp.h>

#include "lib/log.h"
#include "node/privilege.h"

struct us_proc {
    pid_t pid;
    int pidfd;
    unsigned long long starttime;
    bool exited; /* on_exit has been (or is being) called */
    bool reaped; /* the pid may be reused: never signal it again */
    bool timed_out;
    bool adopted; /* not our child (us_proc_adopt): no exit status, never reaped by us */
    int closing;  /* uv handles whose close callback is pending */
    /* The pidfd's readability; without pidfds (valgrind < 3.20 lacks pidfd_open) a timer polls. */
    union {
        uv_poll_t poll;
        uv_timer_t timer;
    } watch;
    uv_timer_t timeout;
    uv_timer_t grace;
    us_proc_exit_cb on_exit;
    void *data;
    char *pidfile;
};

/* ---- /proc helpers (no allocation: the guardian uses us_pgrp_alive) ---- */

/* State, process group and start time (clock ticks since boot, field 22) of `pid`. */
static bool read_proc_stat(pid_t pid, char *state, pid_t *pgrp, unsigned long long *starttime)
{
    char path[32], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return false;
    ssize_t n;
    do
        n = read(fd, buf, sizeof buf - 1);
    while (n < 0 && errno == EINTR);
    close(fd);
    if (n <= 0)
        return false;
    buf[n] = '\0';
    /* The command name (field 2) may hold spaces and parentheses: parse after the last ')'. */
    char *s = strrchr(buf, ')');
    if (!s || s[1] != ' ' || !s[2])
        return false;
    s += 2;
    if (state)
        *state = *s;
    /* s is at field 3; walk to fields 5 (pgrp) and 22 (starttime). */
    int field = 3;
    while (*s && field < 22) {
        if (*s++ == ' ') {
            field++;
            if (field == 5 && pgrp)
                *pgrp = (pid_t)strtol(s, NULL, 10);
        }
    }
    if (field != 22 || !*s)
        return false;
    if (starttime)
        *starttime = strtoull(s, NULL, 10);
    return true;
}

static bool proc_in_group_running(pid_t pid, pid_t pgid)
{
    char state;
    pid_t pgrp = 0;
    /* Zombies (and dead tasks) run no code: they count as gone. */
    return read_proc_stat(pid, &state, &pgrp, NULL) && pgrp == pgid && state != 'Z' &&
           state != 'X' && state != 'x';
}

#define PGRPS_MAX 256 /* groups looked up in one walk over /proc (stack only) */

int us_pgrps_alive(const pid_t *pgids, int n, bool *alive)
{
    if (n > PGRPS_MAX) {
        int count = 0;
        for (int at = 0; at < n; at += PGRPS_MAX)
            count +=
                us_pgrps_alive(pgids + at, n - at < PGRPS_MAX ? n - at : PGRPS_MAX, alive + at);
        return count;
    }
    /* Decided without /proc: a group that no longer exists, or whose leader still runs. */
    bool look[PGRPS_MAX];
    int n_look = 0;
    for (int i = 0; i < n; i++) {
        look[i] = false;
        alive[i] = pgids[i] > 1 && !(kill(-pgids[i], 0) != 0 && errno == ESRCH);
        if (alive[i] && !proc_in_group_running(pgids[i], pgids[i])) {
            alive[i] = false; /* the leader is a zombie or gone: unless a live member turns up */
            look[i] = true;
            n_look++;
        }
    }
    /* One walk over /proc for all of them (a walk per group and per poll made the guardian of
     * an agent with 8 actives on a busy machine announce tens of ms late). */
    int dfd = n_look > 0 ? open("/proc", O_RDONLY | O_DIRECTORY | O_CLOEXEC) : -1;
    if (n_look > 0 && dfd < 0)
        for (int i = 0; i < n; i++)
            alive[i] = alive[i] || look[i]; /* cannot tell: assume the worst */
    char buf[8192] __attribute__((aligned(8)));
    ssize_t got;
    while (dfd >= 0 && n_look > 0 && (got = getdents64(dfd, buf, sizeof buf)) > 0) {
        for (ssize_t off = 0; off < got && n_look > 0;) {
            struct dirent64 *d = (struct dirent64 *)(buf + off);
            off += d->d_reclen;
            char *end;
            long pid = strtol(d->d_name, &end, 10);
            char state;
            pid_t pgrp = 0;
            if (*end || pid <= 0 || end == d->d_name ||
                !read_proc_stat((pid_t)pid, &state, &pgrp, NULL) || state == 'Z' || state == 'X' ||
                state == 'x')
                continue; /* zombies (and dead tasks) run no code: they count as gone */
            for (int i = 0; i < n; i++)
                if (look[i] && pgids[i] == pgrp) {
                    look[i] = false;
                    alive[i] = true;
                    n_look--;
                }
        }
    }
    if (dfd >= 0)
        close(dfd);
    int count = 0;
    for (int i = 0; i < n; i++)
        count += alive[i];
    return count;
}

bool us_pgrp_alive(pid_t pgid)
{
    bool alive;
    us_pgrps_alive(&pgid, 1, &alive);
    return alive;
}

/* ---- pidfile ---- */

static int write_pidfile(const char *path, pid_t pgid, unsigned long long starttime)
{
    char tmp[PATH_MAX], line[64];
    if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp)
        return -ENAMETOOLONG;
    int len = snprintf(line, sizeof line, "%d %llu\n", (int)pgid, starttime);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return -errno;
    int err = 0;
    if (write(fd, line, (size_t)len) != len)
        err = errno ? -errno : -EIO;
    if (close(fd) != 0 && !err)
        err = -errno;
    /* rename: a reader never sees a half-written record. */
    if (!err && rename(tmp, path) != 0)
        err = -errno;
    if (err)
        unlink(tmp);
    return err;
}

/* 0, -ENOENT, or -EINVAL for a malformed file. */
static int read_pidfile(const char *path, pid_t *pgid, unsigned long long *starttime)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    char buf[64];
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return -EINVAL;
    buf[n] = '\0';
    int pg;
    unsigned long long st;
    char nl;
    if (sscanf(buf, "%d %llu%c", &pg, &st, &nl) != 3 || nl != '\n' || pg <= 1)
        return -EINVAL;
    *pgid = pg;
    *starttime = st;
    return 0;
}

/* Remove the pidfile only while it still describes this group (a newer one may have replaced it).
 */
static void remove_pidfile(const us_proc *p)
{
    pid_t pg;
    unsigned long long st;
    if (p->pidfile && read_pidfile(p->pidfile, &pg, &st) == 0 && pg == p->pid && st == p->starttime)
        unlink(p->pidfile);
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

bool us_proc_kill_stale(const char *pidfile)
{
    pid_t pgid;
    unsigned long long want;
    int r = read_pidfile(pidfile, &pgid, &want);
    if (r == -ENOENT)
        return false;
    if (r < 0) {
        us_warn("%s: expected \"PGID STARTTIME\", ignoring the file", pidfile);
        unlink(pidfile);
        return false;
    }
    bool killed = false;
    unsigned long long st;
    pid_t pgrp;
    /* Only the leader's start time proves the group is the one recorded: a pgid whose leader is
     * gone may since have been reused by a stranger. A zombie leader still pins the number. */
    if (read_proc_stat(pgid, NULL, &pgrp, &st) && st == want && pgrp == pgid &&
        us_pgrp_alive(pgid)) {
        us_warn("killing process group %d left behind by an earlier agent (%s)", (int)pgid,
                pidfile);
        kill(-pgid, SIGKILL);
        killed = true;
        int64_t deadline = mono_ms() + 1000;
        while (us_pgrp_alive(pgid) && mono_ms() < deadline)
            sleep_ms(1);
        if (us_pgrp_alive(pgid))
            us_warn("process group %d still there 1 s after SIGKILL", (int)pgid);
    }
    unlink(pidfile);
    return killed;
}

/* ---- the child ---- */

typedef struct child_args {
    pid_t parent;
    bool detachable;
    int sync_fd, null_fd, log_fd, out_fd;
    const char *cwd;
    char *const *argv;
    char *const *envp;
    const us_cred *cred;
} child_args;

static void child_fail(const char *what, const char *arg)
{
    /* Only async-signal-safe calls between fork and exec: the agent may have threads. */
    static const char pre[] = "understudy: ";
    int e = errno;
    (void)!write(2, pre, sizeof pre - 1);
    (void)!write(2, what, strlen(what));
    if (arg) {
        (void)!write(2, " ", 1);
        (void)!write(2, arg, strlen(arg));
    }
    (void)!write(2, ": ", 2);
    const char *es = strerrorname_np(e);
    if (es)
        (void)!write(2, es, strlen(es));
    (void)!write(2, "\n", 1);
    _exit(127);
}

/* setgroups, setgid, setuid: in that order (each needs the privilege the next one gives up). */
static void drop_privileges(const child_args *a)
{
    const us_cred *c = a->cred;
    const char *who = c->user[0] ? c->user : NULL;
    if (setgroups((size_t)c->ngroups, c->groups) != 0)
        child_fail("setgroups", who);
    if (setgid(c->gid) != 0)
        child_fail("setgid", who);
    if (c->set_user && setuid(c->uid) != 0)
        child_fail("setuid", who);
    gid_t rg, eg, sg;
    if (getresgid(&rg, &eg, &sg) != 0 || rg != c->gid || eg != c->gid || sg != c->gid) {
        errno = EPERM;
        child_fail("setgid did not take", who);
    }
    if (c->set_user) {
        uid_t ru, eu, su;
        if (getresuid(&ru, &eu, &su) != 0 || ru != c->uid || eu != c->uid || su != c->uid) {
            errno = EPERM;
            child_fail("setuid did not take", who);
        }
        if (c->uid != 0 && setuid(0) == 0) {
            errno = EPERM;
            child_fail("root could be regained after setuid", who);
        }
    }
    /* A change of credentials clears the parent-death signal: arm it again. */
    if (!a->detachable)
        prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (!a->detachable && getppid() != a->parent)
        _exit(127);
}

static int child_nice;
static bool child_nice_set;

void us_proc_child_nice(int nice)
{
    child_nice = nice;
    child_nice_set = true;
}

static void __attribute__((noreturn)) child_run(const child_args *a)
{
    /* A detachable child may outlive the agent once released (the sync read below tells): only
     * the others must not run without it. */
    if (!a->detachable)
        prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (!a->detachable && getppid() != a->parent) /* the agent died before pdeathsig was armed */
        _exit(127);
    setpgid(0, 0);

    struct sigaction dfl;
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    for (int sig = 1; sig < NSIG; sig++)
        if (sig != SIGKILL && sig != SIGSTOP)
            sigaction(sig, &dfl, NULL);
    /* glibc refuses sigaction() for its reserved real-time signals (32, 33), yet an ignored
     * disposition of them would survive exec: reset them with the raw system call. An all-zero
     * kernel sigaction is SIG_DFL with no flags and an empty mask whatever the field order. */
    unsigned long zero[8] = {0};
    for (int sig = 32; sig < SIGRTMIN; sig++)
        syscall(SYS_rt_sigaction, sig, zero, NULL, (size_t)(_NSIG / 8));
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);

    /* Lift the sources above 3 first so that the dup2s below cannot clobber one another. */
    int n = fcntl(a->null_fd, F_DUPFD, 4);
    int l = fcntl(a->log_fd, F_DUPFD, 4);
    int o = fcntl(a->out_fd, F_DUPFD, 4);
    int s = fcntl(a->sync_fd, F_DUPFD, 4);
    if (n < 0 || l < 0 || o < 0 || s < 0 || dup2(n, 0) < 0 || dup2(o, 1) < 0 || dup2(l, 2) < 0 ||
        dup2(s, 3) < 0)
        _exit(127);
    close_range(4, ~0U, 0);

    /* Back to the agent's own priority (a voter's loop runs above it): lowering a priority is
     * always allowed. Before the privileges go, which could forbid it. */
    if (child_nice_set && getpriority(PRIO_PROCESS, 0) != child_nice)
        setpriority(PRIO_PROCESS, 0, child_nice);
    if (a->cwd && chdir(a->cwd) != 0)
        child_fail("chdir", a->cwd);
    if (a->cred && a->cred->drop)
        drop_privileges(a);

    char b;
    ssize_t r;
    do
        r = read(3, &b, 1);
    while (r < 0 && errno == EINTR);
    if (r != 1) /* the agent died or gave up before before_exec completed */
        _exit(127);
    close(3);

    execve("/bin/sh", a->argv, a->envp);
    child_fail("execve", "/bin/sh");
    _exit(127);
}

/* ---- parent side ---- */

static void on_handle_closed(uv_handle_t *h)
{
    us_proc *p = h->data;
    if (--p->closing > 0)
        return;
    if (p->pidfd >= 0)
        close(p->pidfd);
    free(p->pidfile);
    free(p);
}

static void close_handles(us_proc *p)
{
    p->closing = 3;
    uv_close((uv_handle_t *)&p->watch, on_handle_closed);
    uv_close((uv_handle_t *)&p->timeout, on_handle_closed);
    uv_close((uv_handle_t *)&p->grace, on_handle_closed);
}

/* Stop every watch and timer on an exited (or released) process. */
static void stop_watching(us_proc *p)
{
    if (p->pidfd >= 0)
        uv_poll_stop(&p->watch.poll);
    else
        uv_timer_stop(&p->watch.timer);
    uv_timer_stop(&p->timeout);
    uv_timer_stop(&p->grace);
}

static int wait_child(const us_proc *p, siginfo_t *si, int flags)
{
    memset(si, 0, sizeof *si);
    int rc = p->pidfd >= 0 ? waitid(P_PIDFD, (id_t)p->pidfd, si, WEXITED | WNOHANG | flags)
                           : waitid(P_PID, (id_t)p->pid, si, WEXITED | WNOHANG | flags);
    if (rc != 0)
        return -errno;
    return si->si_pid != 0;
}

/* Exited but not yet reaped? Uses WNOWAIT so the pid stays reserved. */
static int peek_exit(const us_proc *p, siginfo_t *si)
{
    return wait_child(p, si, WNOWAIT);
}

static void check_exit(us_proc *p)
{
    if (p->exited)
        return;
    siginfo_t si;
    int r;
    int st;
    if (p->adopted) {
        /* Not our child: the pidfd says it exited; its status went to its new parent. The rest
         * of the group is killed while the leader's number cannot belong to a stranger: it is a
         * zombie with the recorded start time, or gone (a live member pins the pgid). */
        char state;
        unsigned long long stt;
        pid_t pg;
        bool leader = read_proc_stat(p->pid, &state, &pg, &stt);
        if (leader && stt == p->starttime && state != 'Z' && state != 'X' && state != 'x')
            return; /* spurious: still running */
        if (!leader || stt == p->starttime)
            kill(-p->pid, SIGKILL);
        p->reaped = true;
        st = 255;
        r = 1;
    } else {
        r = peek_exit(p, &si);
        if (r == 0 || r == -EINTR || r == -EAGAIN)
            return;
    }
    if (p->adopted) {
        /* status set above */
    } else if (r < 0) {
        /* Someone else reaped it (SIGCHLD ignored, or a stray waitpid(-1)): the number may be
         * reused already, so the group cannot be signalled safely any more. */
        us_warn("process %d was reaped behind the supervisor's back (%s)", (int)p->pid,
                strerror(-r));
        p->reaped = true;
        st = 255;
    } else {
        st = si.si_code == CLD_EXITED ? si.si_status : 128 + si.si_status;
        /* The zombie leader still pins the pgid, so this cannot hit a stranger. */
        kill(-p->pid, SIGKILL);
    }
    if (p->timed_out)
        st = US_PROC_TIMEOUT;
    p->exited = true;
    stop_watching(p);
    remove_pidfile(p);
    /* Reaped only after on_exit, so that on_exit can still untrack the pgid from the guardian
     * before the number can be reused. */
    p->on_exit(p, st, p->data);
    if (!p->reaped) {
        while (wait_child(p, &si, 0) == -EINTR)
            ;
        p->reaped = true;
    }
    close_handles(p);
}

static void on_pidfd(uv_poll_t *h, int status, int events)
{
    (void)status;
    (void)events;
    check_exit(h->data);
}

static void on_exit_poll(uv_timer_t *t)
{
    check_exit(t->data);
}

static void on_timeout(uv_timer_t *t)
{
    us_proc *p = t->data;
    siginfo_t si;
    if (p->exited || peek_exit(p, &si) != 0)
        return; /* it ended on its own just now: report its real status */
    p->timed_out = true;
    kill(-p->pid, SIGKILL);
}

static void on_grace(uv_timer_t *t)
{
    us_proc *p = t->data;
    if (!p->reaped)
        kill(-p->pid, SIGKILL);
}

int us_proc_spawn(uv_loop_t *loop, const us_proc_opts *o, us_proc **out)
{
    *out = NULL;
    if (!o->cmd || !o->on_exit)
        return -EINVAL;
    if (o->cwd) {
        /* Checked here so that a bad cwd is an error of the call, not exit status 127. */
        struct stat sb;
        if (stat(o->cwd, &sb) != 0)
            return -errno;
        if (!S_ISDIR(sb.st_mode))
            return -ENOTDIR;
    }

    int err = 0;
    us_proc *p = calloc(1, sizeof *p);
    char **envp = NULL;
    if (!o->env) {
        us_env_spec spec = us_env_spec_for(NULL, NULL, NULL);
        envp = us_env_build(&spec);
    } else {
        size_t n = 0;
        while (o->env[n])
            n++;
        if ((envp = calloc(n + 1, sizeof *envp)))
            memcpy(envp, o->env, n * sizeof *envp);
    }
    if (!p || !envp || (o->pidfile && !(p->pidfile = strdup(o->pidfile)))) {
        free(envp);
        if (p)
            free(p->pidfile);
        free(p);
        return -ENOMEM;
    }
    p->pidfd = -1;
    p->on_exit = o->on_exit;
    p->data = o->data;

    int null_fd = -1, log_fd = -1, out_fd = -1, sync[2] = {-1, -1};
    null_fd = open(o->stdin_path ? o->stdin_path : "/dev/null", O_RDONLY | O_CLOEXEC);
    if (null_fd < 0) {
        err = -errno;
        if (o->stdin_path)
            us_warn("%s: cannot open for the child's stdin: %s", o->stdin_path, strerror(errno));
        goto fail;
    }
    log_fd = open(o->log_path ? o->log_path : "/dev/null",
                  O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (log_fd < 0) {
        err = -errno;
        us_warn("%s: cannot open log file: %s", o->log_path, strerror(errno));
        goto fail;
    }
    if (o->out_path) {
        out_fd = open(o->out_path, O_WRONLY | O_TRUNC | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (out_fd < 0) {
            err = -errno;
            us_warn("%s: cannot open for the child's stdout: %s", o->out_path, strerror(errno));
            goto fail;
        }
    }
    /* A socket rather than a pipe: the release byte is sent with MSG_NOSIGNAL. */
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sync) != 0) {
        err = -errno;
        goto fail;
    }

    char *argv[] = {"sh", "-c", (char *)o->cmd, NULL};
    child_args a = {.parent = getpid(),
                    .detachable = o->detachable,
                    .sync_fd = sync[1],
                    .null_fd = null_fd,
                    .log_fd = log_fd,
                    .out_fd = out_fd >= 0 ? out_fd : log_fd,
                    .cwd = o->cwd,
                    .argv = argv,
                    .envp = envp,
                    .cred = o->cred};

    /* Block every signal across fork: an agent handler (libuv's included) must not run in the
     * child before its dispositions are reset. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    pid_t pid = fork();
    if (pid == 0)
        child_run(&a);
    int fork_errno = errno;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    close(null_fd);
    close(log_fd);
    if (out_fd >= 0)
        close(out_fd);
    close(sync[1]);
    null_fd = log_fd = out_fd = sync[1] = -1;
    free(envp);
    envp = NULL;
    if (pid < 0) {
        err = -fork_errno;
        goto fail;
    }
    p->pid = pid;
    /* Also here, against the race with the child's own setpgid: before_exec needs the group. */
    setpgid(pid, pid);

    p->pidfd = pidfd_open(pid, 0);
    if (p->pidfd < 0 && errno != ENOSYS) {
        err = -errno;
        goto fail_child;
    }
    if (!read_proc_stat(pid, NULL, NULL, &p->starttime)) {
        err = -ESRCH;
        goto fail_child;
    }
    if (p->pidfile && (err = write_pidfile(p->pidfile, pid, p->starttime)) < 0) {
        us_warn("%s: cannot write pidfile: %s", p->pidfile, strerror(-err));
        goto fail_child;
    }
    if (p->pidfd >= 0)
        err = uv_poll_init(loop, &p->watch.poll, p->pidfd);
    else
        err = uv_timer_init(loop, &p->watch.timer);
    if (err < 0)
        goto fail_child;
    uv_timer_init(loop, &p->timeout);
    uv_timer_init(loop, &p->grace);
    p->watch.poll.data = p->timeout.data = p->grace.data = p;
    if (p->pidfd >= 0)
        err = uv_poll_start(&p->watch.poll, UV_READABLE, on_pidfd);
    else
        err = uv_timer_start(&p->watch.timer, on_exit_poll, 10, 10);
    if (err < 0) {
        kill(pid, SIGKILL);
        while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
            ;
        remove_pidfile(p);
        close(sync[0]);
        close_handles(p);
        return err;
    }

    if (o->before_exec)
        o->before_exec(pid, o->data);
    /* If the child died meanwhile this fails, and the pidfd reports its exit as usual. */
    char go = 1;
    while (send(sync[0], &go, 1, MSG_NOSIGNAL) < 0 && errno == EINTR)
        ;
    close(sync[0]);

    if (o->timeout_ms > 0)
        uv_timer_start(&p->timeout, on_timeout, (uint64_t)o->timeout_ms, 0);
    *out = p;
    return 0;

fail_child:
    /* Still before exec: only the child itself is in the group. */
    kill(pid, SIGKILL);
    while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
        ;
    remove_pidfile(p);
fail:
    if (null_fd >= 0)
        close(null_fd);
    if (log_fd >= 0)
        close(log_fd);
    if (out_fd >= 0)
        close(out_fd);
    if (sync[0] >= 0)
        close(sync[0]);
    if (sync[1] >= 0)
        close(sync[1]);
    if (p->pidfd >= 0)
        close(p->pidfd);
    free(envp);
    free(p->pidfile);
    free(p);
    return err;
}

int us_proc_adopt(uv_loop_t *loop, const char *pidfile, pid_t pgid, us_proc_exit_cb on_exit,
                  void *data, us_proc **out)
{
    *out = NULL;
    if (!pidfile || !on_exit || pgid <= 1)
        return -EINVAL;
    pid_t rec;
    unsigned long long want;
    int r = read_pidfile(pidfile, &rec, &want);
    if (r < 0)
        return r;
    if (rec != pgid)
        return -ESRCH; /* the file names another group: not the one handed over */
    us_proc *p = calloc(1, sizeof *p);
    if (!p || !(p->pidfile = strdup(pidfile))) {
        free(p);
        return -ENOMEM;
    }
    p->pid = pgid;
    p->starttime = want;
    p->adopted = true;
    p->on_exit = on_exit;
    p->data = data;
    /* Open first, verify after: the pidfd then surely refers to the process with the recorded
     * start time, not to a later process that got its number. */
    p->pidfd = pidfd_open(pgid, 0);
    char state;
    pid_t pg;
    unsigned long long st;
    if (p->pidfd < 0 || !read_proc_stat(pgid, &state, &pg, &st) || st != want || pg != pgid ||
        state == 'Z' || state == 'X' || state == 'x') {
        int e = p->pidfd < 0 ? -errno : -ESRCH;
        if (p->pidfd >= 0)
            close(p->pidfd);
        free(p->pidfile);
        free(p);
        return e;
    }
    int err = uv_poll_init(loop, &p->watch.poll, p->pidfd);
    if (err < 0) {
        close(p->pidfd);
        free(p->pidfile);
        free(p);
        return err;
    }
    uv_timer_init(loop, &p->timeout);
    uv_timer_init(loop, &p->grace);
    p->watch.poll.data = p->timeout.data = p->grace.data = p;
    err = uv_poll_start(&p->watch.poll, UV_READABLE, on_pidfd);
    if (err < 0) {
        close_handles(p);
        return err;
    }
    *out = p;
    return 0;
}

void us_proc_release(us_proc *p)
{
    if (p->exited)
        return;
    p->exited = true;
    p->reaped = true; /* never signalled by us again */
    stop_watching(p);
    close_handles(p);
}

pid_t us_proc_pid(const us_proc *p)
{
    return p->pid;
}

void us_proc_kill(us_proc *p, int sig)
{
    if (!p->reaped)
        kill(-p->pid, sig);
}

void us_proc_stop(us_proc *p, int grace_ms)
{
    if (p->exited)
        return;
    kill(-p->pid, SIGTERM);
    kill(-p->pid, SIGCONT); /* a stopped group would not act on SIGTERM */
    if (grace_ms <= 0)
        kill(-p->pid, SIGKILL);
    else if (!uv_is_active((uv_handle_t *)&p->grace))
        uv_timer_start(&p->grace, on_grace, (uint64_t)grace_ms, 0);
}

void us_proc_set_data(us_proc *p, void *data)
{
    p->data = data;
}
