/* notify.c — see notify.h.
 *
 * Events are copied into a queue of our own as soon as they are seen (after every FSM change), so
 * that a slow hook cannot lose them to the replicated ring wrapping around, and so that "is this
 * node the leader" is judged when the event arrives, not when its turn comes.
 *
 * The event's JSON goes to a file in DATA_DIR/run that the agent opens as the hook's stdin (before
 * the hook drops privileges: the data directory is the agent's alone).
 */
#include "node/notify.h"

#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/lease.h"
#include "core/role.h"
#include "lib/log.h"
#include "node/privilege.h"
#include "node/supervisor.h"
#include "lib/clock.h"

#define QUEUE_MAX 256
#define DEFAULT_TIMEOUT_MS 10000
#define STOP_GRACE_MS 1500 /* the agent waits up to 2 s for its processes when it stops */

/* Who the hook runs as, and its service's env assignments (privilege.h). */
typedef struct runas {
    char user[US_USER_MAX];
    char group[US_USER_MAX];
    int n_env;
    char env[US_MAX_ENV][US_ENV_MAX];
} runas;

static void runas_of(const us_service_def *d, runas *r)
{
    us_strlcpy(r->user, d->user, sizeof r->user);
    us_strlcpy(r->group, d->group, sizeof r->group);
    r->n_env = d->n_env > US_MAX_ENV ? US_MAX_ENV : d->n_env;
    memcpy(r->env, d->env, sizeof r->env[0] * (size_t)r->n_env);
}

typedef struct pending {
    us_event ev;
    char cmd[US_CMD_MAX];
    int timeout_ms;
    runas as;
} pending;

/* A service's hook as last seen, for the events of its removal (the definition is gone then). */
typedef struct known_hook {
    char service[US_NAME_MAX];
    char cmd[US_CMD_MAX];
    int timeout_ms;
    runas as;
} known_hook;

static struct {
    us_notify_env env;
    bool has_env;  /* us_notify_init was called */
    bool started;  /* the first pump happened */
    bool stopping; /* us_notify_stop was called: no hook starts any more */
    int64_t start_wall_ms;
    uint64_t seen; /* newest event seq taken in */
    pending *queue[QUEUE_MAX];
    int head, n;
    us_proc *proc;
    pending *running;
    uv_timer_t grace; /* agent stopping: kill the running hook when this fires */
    char json_path[PATH_MAX + 32];
    int n_known;
    known_hook known[US_MAX_SERVICES];
    uint64_t known_v; /* the state's defs_v when `known` was taken */
} N;

/* ---- the queue ---- */

static void push(pending *p)
{
    if (N.n == QUEUE_MAX) {
        pending *old = N.queue[N.head];
        us_warn("%s: notify queue full (%d events waiting): dropped the hook of event %llu",
                old->ev.service, QUEUE_MAX, (unsigned long long)old->ev.seq);
        free(old);
        N.head = (N.head + 1) % QUEUE_MAX;
        N.n--;
    }
    N.queue[(N.head + N.n) % QUEUE_MAX] = p;
    N.n++;
}

static pending *pop(void)
{
    if (N.n == 0)
        return NULL;
    pending *p = N.queue[N.head];
    N.head = (N.head + 1) % QUEUE_MAX;
    N.n--;
    return p;
}

static void clear_queue(void)
{
    for (pending *p; (p = pop()) != NULL;)
        free(p);
}

/* ---- taking events in ---- */

static const known_hook *hook_of(const us_state *s, const char *service, known_hook *tmp)
{
    int k = us_state_find_service(s, service);
    if (k >= 0) {
        const us_service_def *d = &s->services.svc[k];
        us_strlcpy(tmp->service, d->name, sizeof tmp->service);
        us_strlcpy(tmp->cmd, d->notify, sizeof tmp->cmd);
        tmp->timeout_ms = d->notify_timeout_ms;
        runas_of(d, &tmp->as);
        return tmp;
    }
    for (int i = 0; i < N.n_known; i++)
        if (strcmp(N.known[i].service, service) == 0)
            return &N.known[i];
    return NULL;
}

static void remember_hooks(const us_state *s)
{
    N.known_v = s->defs_v;
    N.n_known = 0;
    for (int i = 0; i < s->services.n && i < US_MAX_SERVICES; i++) {
        const us_service_def *d = &s->services.svc[i];
        if (!d->notify[0])
            continue;
        known_hook *k = &N.known[N.n_known++];
        us_strlcpy(k->service, d->name, sizeof k->service);
        us_strlcpy(k->cmd, d->notify, sizeof k->cmd);
        k->timeout_ms = d->notify_timeout_ms;
        runas_of(d, &k->as);
    }
}

static void take_in(void)
{
    const us_state *s = N.env.state;
    if (s->event_seq < N.seen) /* cannot happen (seqs only grow); start over rather than stall */
        N.seen = s->event_seq;
    if (s->event_seq == N.seen)
        return;
    uint64_t first = us_state_first_event(s);
    if (N.seen + 1 < first) {
        /* A snapshot or a burst moved the history past us. Only worth a word if some of what was
         * lost was recorded after we started. */
        const us_event *e = us_state_event(s, first);
        if (e && e->time_ms >= N.start_wall_ms)
            us_warn("notify: events %llu..%llu were no longer kept when this agent got to them; "
                    "their hooks did not run",
                    (unsigned long long)N.seen + 1, (unsigned long long)first - 1);
        N.seen = first - 1;
    }
    for (uint64_t q = N.seen + 1; q <= s->event_seq; q++) {
        const us_event *e = us_state_event(s, q);
        if (!e || !e->service[0] || e->time_ms < N.start_wall_ms)
            continue;
        bool mine = e->node[0] ? strcmp(e->node, N.env.node) == 0 : N.env.is_leader(N.env.data);
        known_hook tmp;
        const known_hook *h = mine ? hook_of(s, e->service, &tmp) : NULL;
        if (!h || !h->cmd[0])
            continue;
        pending *p = calloc(1, sizeof *p);
        if (!p) {
            us_error("%s: out of memory: the notify hook of event %llu does not run", e->service,
                     (unsigned long long)e->seq);
            continue;
        }
        p->ev = *e;
        us_strlcpy(p->cmd, h->cmd, sizeof p->cmd);
        p->as = h->as;
        p->timeout_ms = h->timeout_ms > 0 ? h->timeout_ms : DEFAULT_TIMEOUT_MS;
        push(p);
    }
    N.seen = s->event_seq;
    if (s->defs_v != N.known_v) /* reading 1,000 definitions after every command cost more than the
                                   rest of an apply */
        remember_hooks(s);
}

/* ---- running one ---- */

static void iso_time(int64_t ms, char *out, size_t size)
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    char buf[32];
    strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out, size, "%s.%03dZ", buf, (int)(ms % 1000));
}

/* The event as the hook reads it on stdin, written whole before the hook starts. */
static int write_event_file(const us_event *e, const char *time_iso)
{
    char tmp[sizeof N.json_path + 8];
    snprintf(tmp, sizeof tmp, "%s.tmp", N.json_path);
    json_t *j = us_event_to_json(e);
    /* As GET /v1/events has it: seq a JSON integer, plus the time as text. */
    json_object_set_new(j, "seq", json_integer((json_int_t)e->seq));
    json_object_set_new(j, "time", json_string(time_iso));
    char *text = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    FILE *f = text ? fopen(tmp, "w") : NULL;
    int rc = f ? 0 : -1;
    if (f) {
        rc = fprintf(f, "%s\n", text) < 0 ? -1 : 0;
        if (fclose(f) != 0)
            rc = -1;
        if (rc == 0 && rename(tmp, N.json_path) != 0)
            rc = -1;
        if (rc != 0)
            unlink(tmp);
    }
    free(text);
    return rc;
}

static void start_next(void);

static void on_hook_exit(us_proc *p, int status, void *data)
{
    (void)p;
    (void)data;
    pending *r = N.running;
    N.proc = NULL;
    N.running = NULL;
    uv_timer_stop(&N.grace);
    unlink(N.json_path);
    if (r) {
        const us_event *e = &r->ev;
        if (status == US_PROC_TIMEOUT)
            us_warn("%s: notify hook of event %llu (%s %s -> %s) ran longer than %d ms: killed "
                    "its process group",
                    e->service, (unsigned long long)e->seq, e->kind, e->from, e->to, r->timeout_ms);
        else if (status != 0)
            us_warn("%s: notify hook of event %llu (%s %s -> %s) failed (status %d)", e->service,
                    (unsigned long long)e->seq, e->kind, e->from, e->to, status);
        else
            us_debug("%s: notify hook of event %llu done", e->service, (unsigned long long)e->seq);
        free(r);
    }
    if (N.started)
        start_next();
}

static char *fmt(const char *f, ...) __attribute__((format(printf, 1, 2)));
static char *fmt(const char *f, ...)
{
    va_list ap;
    va_start(ap, f);
    char *s = NULL;
    if (vasprintf(&s, f, ap) < 0)
        s = NULL;
    va_end(ap);
    return s;
}

static int spawn_hook(pending *r)
{
    const us_event *e = &r->ev;
    char iso[40];
    iso_time(e->time_ms, iso, sizeof iso);
    if (write_event_file(e, iso) != 0) {
        us_error("%s: cannot write %s for the notify hook of event %llu: %s", e->service,
                 N.json_path, (unsigned long long)e->seq, strerror(errno));
        return -1;
    }
    us_cred cred;
    char why[US_REASON_MAX];
    if (us_cred_resolve(r->as.user, r->as.group, N.env.node, &cred, why, sizeof why) != 0) {
        us_error("%s: cannot run the notify hook of event %llu: %s", e->service,
                 (unsigned long long)e->seq, why);
        unlink(N.json_path);
        return -1;
    }
    uint64_t epoch;
    const char *role = us_assigned_role(N.env.state, e->service, N.env.node, &epoch);
    us_active_env act;
    us_active_env_of(N.env.state, e->service, &act);
    char *env[] = {
        fmt("UNDERSTUDY_EVENT_SEQ=%llu", (unsigned long long)e->seq),
        fmt("UNDERSTUDY_EVENT_TIME=%s", iso),
        fmt("UNDERSTUDY_EVENT_TIME_MS=%lld", (long long)e->time_ms),
        fmt("UNDERSTUDY_EVENT_KIND=%s", e->kind),
        fmt("UNDERSTUDY_EVENT_FROM=%s", e->from),
        fmt("UNDERSTUDY_EVENT_TO=%s", e->to),
        fmt("UNDERSTUDY_EVENT_CAUSE=%s", e->cause),
        fmt("UNDERSTUDY_EVENT_NODE=%s", e->node),
        fmt("UNDERSTUDY_SERVICE=%s", e->service),
        fmt("UNDERSTUDY_NODE=%s", N.env.node),
        fmt("UNDERSTUDY_EPOCH=%llu", (unsigned long long)epoch),
        fmt("UNDERSTUDY_ROLE=%s", role),
        fmt("UNDERSTUDY_DATA_DIR=%s", N.env.data_dir),
        strdup(act.node),
        strdup(act.host),
        strdup(act.epoch),
        strdup(act.standbys),
        NULL,
    };
    const size_t n_env = sizeof env / sizeof env[0] - 1;
    bool bad = false;
    for (size_t i = 0; i < n_env; i++)
        bad |= env[i] == NULL;
    char *line = bad ? NULL : strdup(r->cmd);
    char **envp = NULL;
    if (!bad) {
        us_env_spec spec = us_env_spec_for(NULL, &cred, (const char *const *)env);
        spec.n_env = r->as.n_env;
        spec.env = (const char(*)[US_ENV_MAX])r->as.env;
        envp = us_env_build(&spec);
    }
    int rc = -ENOMEM;
    if (line && envp) {
        char log_path[PATH_MAX + 96], pidfile[PATH_MAX + 32];
        snprintf(log_path, sizeof log_path, "%s/logs/%s.notify.log", N.env.data_dir, e->service);
        /* Service names have no '_': no clash with a service's own pidfile. */
        snprintf(pidfile, sizeof pidfile, "%s/run/_notify.pid", N.env.data_dir);
        us_proc_opts o = {
            .cmd = line,
            .env = (const char *const *)envp,
            .cred = &cred,
            .cwd = N.env.cwd,
            .log_path = log_path,
            .stdin_path = N.json_path,
            .pidfile = pidfile,
            .timeout_ms = r->timeout_ms,
            .on_exit = on_hook_exit,
        };
        N.running = r;
        rc = us_proc_spawn(N.env.loop, &o, &N.proc);
        if (rc != 0)
            N.running = NULL;
    }
    free(line);
    free(envp);
    for (size_t i = 0; i < n_env; i++)
        free(env[i]);
    if (rc != 0) {
        us_error("%s: cannot start the notify hook of event %llu: %s", e->service,
                 (unsigned long long)e->seq, strerror(-rc));
        unlink(N.json_path);
        return -1;
    }
    us_debug("%s: notify hook of event %llu (%s %s -> %s) started", e->service,
             (unsigned long long)e->seq, e->kind, e->from, e->to);
    return 0;
}

static void start_next(void)
{
    while (!N.proc && !N.stopping) {
        pending *r = pop();
        if (!r)
            return;
        if (spawn_hook(r) != 0)
            free(r); /* said so already; the next one may fare better */
    }
}

/* ---- public ---- */

void us_notify_init(const us_notify_env *env)
{
    N.env = *env;
    N.has_env = true;
}

void us_notify_pump(void)
{
    if (!N.has_env || N.stopping)
        return;
    if (!N.started) {
        /* First call: what the history holds now happened before us. */
        clear_queue();
        N.started = true;
        uv_timer_init(N.env.loop, &N.grace); /* closed with the agent's other handles */
        N.start_wall_ms = us_wall_ms();
        N.seen = N.env.state->event_seq;
        snprintf(N.json_path, sizeof N.json_path, "%s/run/_notify.json", N.env.data_dir);
        remember_hooks(N.env.state);
    }
    take_in();
    start_next();
}

static void on_grace(uv_timer_t *t)
{
    (void)t;
    if (N.proc) {
        us_warn("notify hook still running when the agent stops: killing its process group");
        us_proc_kill(N.proc, SIGKILL);
    }
}

void us_notify_stop(void)
{
    N.stopping = true;
    if (!N.started)
        return;
    if (N.n)
        us_warn("the agent stops: %d notify hook(s) will not run", N.n);
    clear_queue();
    if (N.proc)
        uv_timer_start(&N.grace, on_grace, STOP_GRACE_MS, 0);
}

bool us_notify_quiet(void)
{
    return !N.started || N.proc == NULL;
}
