/* instance.c — this node's instance of each service: it follows the replicated assignment, but acts
 * as active only under a committed epoch given to this agent's incarnation and while the lease is
 * valid with a reserve (demote_before_ms). Once it stops acting under an epoch it never acts under
 * that epoch again (abandoned_epoch), so a frozen-and-thawed agent cannot resume a role the leader
 * may already have given away.
 *
 * Order of a promotion:  cold: promote hook -> start process;  hot: promote hook (process runs).
 * Order of a demotion:   cold: stop process -> demote hook;    hot: demote hook (process stays).
 * A hot standby of a service with `follow` runs it for each new active (node or epoch) before it
 * counts as ready, and starts its process only once it followed the current active.
 * The report (DEMOTED/FAILED) that lets the leader move the role is published only once every
 * process that acted is gone.
 */
#include "agent/instance.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <sys/socket.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/lease.h"
#include "core/role.h"
#include "lib/log.h"
#include "node/logrotate.h"
#include "node/notify.h"
#include "node/privilege.h"
#include "lib/clock.h"

enum { HOOK_NONE, HOOK_PROMOTE, HOOK_DEMOTE, HOOK_FOLLOW, HOOK_SYNC };

struct us_instances {
    us_instances_env env;
    /* Adopted from an earlier agent (planned restart): left alone until our state has caught
     * up with the one that agent had (adopt_version) and our own lease renewals went past the
     * one it left (adopt_lease_ms); meanwhile only the lease end stops them. */
    uint64_t adopt_version;
    int64_t adopt_lease_ms;
    us_instance inst[US_MAX_SERVICES];
    uv_timer_t announce_timers[US_MAX_SERVICES]; /* by instance slot (handles must not move) */
    int hi; /* slots in use are below this: walks stop here, not at US_MAX_SERVICES */
    int slot_of[US_MAX_SERVICES]; /* by state index: the slot it had at the last reconcile (a
                                     hint, checked by name) */
    /* By state index: its instance's idle_at_touched when the last reconcile left it idle (no
     * role, nothing running or checking), else 0. While it equals 1 + the service's touched, the
     * walk passes over the service without reading its slot, definition or assignment (a walk
     * over 1,000 services each tick and after each command was a tenth of a busy agent's time;
     * 64 agents placing services on two cores could not spare it). Only step() takes an idle
     * instance out of idleness (spawn() clears the entry all the same). */
    uint64_t idle_of[US_MAX_SERVICES];
    bool idle_silent[US_MAX_SERVICES]; /* ... and its instance was silent then */
    int n_used; /* slots in use: when it equals the state's services, none is of a deleted one */
};

static void report_now(us_instances *x)
{
    x->env.report_now(x->env.data);
}

static void schedule_reconcile(us_instances *x)
{
    x->env.schedule_reconcile(x->env.data);
}

static us_instance *slot(us_instances *a, const char *service, bool create)
{
    us_instance *free_slot = NULL;
    for (int i = 0; i < a->hi; i++) {
        if (a->inst[i].used && strcmp(a->inst[i].service, service) == 0)
            return &a->inst[i];
        if (!a->inst[i].used && !free_slot)
            free_slot = &a->inst[i];
    }
    if (create && !free_slot && a->hi < US_MAX_SERVICES)
        free_slot = &a->inst[a->hi++];
    if (!create || !free_slot)
        return NULL;
    memset(free_slot, 0, sizeof *free_slot);
    free_slot->used = true;
    free_slot->state_idx = -1;
    free_slot->report.position = -1;
    a->n_used++;
    free_slot->owner = a;
    us_strlcpy(free_slot->service, service, sizeof free_slot->service);
    return free_slot;
}

bool us_instance_silent(const us_instance *in)
{
    const us_inst_obs *o = &in->report;
    return o->state == US_INST_NONE && o->health == US_HEALTH_UNKNOWN && !o->cause[0] &&
           o->exit_status == 0 && !o->refused && !in->proc && !in->checker &&
           in->standby_restarts_total == 0 && !in->restart_cause[0];
}

const us_instance *us_instance_of(us_instances *a, const char *service, int hint)
{
    if (hint >= 0 && hint < US_MAX_SERVICES) {
        int h = a->slot_of[hint];
        if (h >= 0 && h < a->hi && a->inst[h].used && strcmp(a->inst[h].service, service) == 0)
            return &a->inst[h];
    }
    return slot(a, service, false);
}

static void before_exec(pid_t pgid, void *data)
{
    us_instance *in = data;
    us_instance *x = in;
    us_guardian_track(in->owner->env.guardian, pgid, in->service, x->spawn_epoch, x->spawn_fenced);
}

static void on_exit_cb(us_proc *p, int status, void *data);
static const us_service_def *def_of(us_instances *a, const char *service);

/* Who the service's children run as on this node; NULL when it cannot run here (why says). */
static const us_cred *service_cred(us_instances *a, const us_service_def *d, us_cred *cred,
                                   char *why, size_t len)
{
    if (us_cred_resolve(d ? d->user : "", d ? d->group : "", a->env.cfg->name, cred, why, len) != 0)
        return NULL;
    return cred;
}

static int spawn_to(us_instance *in, const char *cmd, const char *role, uint64_t epoch, bool fenced,
                    int timeout_ms, const char *pid_suffix, const char *out_path,
                    const char *extra_env, us_proc **out)
{
    us_instances *a = in->owner;
    if (in->state_idx >= 0 && in->state_idx < US_MAX_SERVICES)
        a->idle_of[in->state_idx] = 0; /* (it is not idle; step() says so too) */
    const us_service_def *d = def_of(a, in->service);
    us_cred cred;
    char why[US_REASON_MAX];
    if (!service_cred(a, d, &cred, why, sizeof why)) {
        us_error("%s: cannot start '%s': %s", in->service, cmd, why);
        return -EPERM;
    }
    char e_svc[US_NAME_MAX + 32], e_node[US_NAME_MAX + 32], e_role[64], e_epoch[64];
    char e_dir[PATH_MAX + 32];
    snprintf(e_svc, sizeof e_svc, "UNDERSTUDY_SERVICE=%s", in->service);
    snprintf(e_node, sizeof e_node, "UNDERSTUDY_NODE=%s", a->env.cfg->name);
    snprintf(e_role, sizeof e_role, "UNDERSTUDY_ROLE=%s", role);
    snprintf(e_epoch, sizeof e_epoch, "UNDERSTUDY_EPOCH=%llu", (unsigned long long)epoch);
    snprintf(e_dir, sizeof e_dir, "UNDERSTUDY_DATA_DIR=%s", a->env.cfg->data_dir);
    us_active_env act;
    us_active_env_of(a->env.state, in->service, &act);
    const char *uenv[] = {e_svc,    e_node,    e_role,       e_epoch,   e_dir, act.node,
                          act.host, act.epoch, act.standbys, extra_env, NULL};
    us_env_spec spec = us_env_spec_for(d, &cred, uenv);
    char **env = us_env_build(&spec);
    if (!env)
        return -ENOMEM;
    char log_path[PATH_MAX + 96], pidfile[PATH_MAX + 96];
    snprintf(log_path, sizeof log_path, "%s/logs/%s.log", a->env.cfg->data_dir, in->service);
    snprintf(pidfile, sizeof pidfile, "%s/run/%s%s.pid", a->env.cfg->data_dir, in->service,
             pid_suffix);
    us_instance *x = in;
    x->spawn_epoch = epoch;
    x->spawn_fenced = fenced;
    us_proc_opts o = {
        .cmd = cmd,
        .env = (const char *const *)env,
        .cred = &cred,
        .cwd = a->env.cwd,
        .log_path = log_path,
        .out_path = out_path,
        .pidfile = pidfile,
        .timeout_ms = timeout_ms,
        .before_exec = before_exec,
        .on_exit = on_exit_cb,
        .data = in,
        /* The service process may outlive the agent (a planned restart hands it over); hooks
         * never do. */
        .detachable = out == &in->proc,
    };
    int rc = us_proc_spawn(a->env.loop, &o, out);
    free(env);
    if (rc == 0 && out == &in->proc)
        in->proc_started_ms = us_now_ms();
    if (rc == 0)
        us_debug("%s: started pid %d (%s)", in->service, (int)us_proc_pid(*out), role);
    if (rc != 0)
        us_error("%s: cannot start '%s': %s", in->service, cmd, strerror(-rc));
    return rc;
}

static int spawn(us_instance *in, const char *cmd, const char *role, uint64_t epoch, bool fenced,
                 int timeout_ms, const char *pid_suffix, us_proc **out)
{
    return spawn_to(in, cmd, role, epoch, fenced, timeout_ms, pid_suffix, NULL, NULL, out);
}

/* Health and cause of the report: the failure's cause once FAILED, else the checks' verdict. */
static bool refresh_obs(us_instance *in)
{
    us_inst_obs *o = &in->report;
    const us_check_status *cs = in->checker ? us_checker_status(in->checker) : NULL;
    us_health h = in->follow_cause[0] ? US_HEALTH_UNHEALTHY : cs ? cs->health : US_HEALTH_UNKNOWN;
    const char *cause = o->state == US_INST_FAILED ? in->fail_cause
                        : in->follow_cause[0]      ? in->follow_cause
                        : h == US_HEALTH_UNHEALTHY ? cs->cause
                                                   : "";
    bool changed = o->health != h || strcmp(o->cause, cause) != 0;
    o->health = h;
    us_strlcpy(o->cause, cause, sizeof o->cause);
    return changed;
}

static void set_report(us_instance *in, us_inst_state st, uint64_t epoch, int status)
{
    bool changed = in->report.state != st || in->report.epoch != epoch;
    in->report.refused = false;
    in->report.state = st;
    in->report.epoch = epoch;
    in->report.exit_status = status;
    changed |= refresh_obs(in);
    if (in->state_idx >= 0 && in->state_idx < US_MAX_SERVICES)
        in->owner->idle_of[in->state_idx] = 0; /* what it says is to be read again */
    /* The leader may be waiting for exactly this (a demotion, a failure): tell it now rather
     * than with the next heartbeat. */
    if (changed)
        report_now(in->owner);
}

/* Passive reports must not hide a DEMOTED/FAILED/FENCED the leader has not acted on yet. */
static void passive_report(us_instance *in, us_inst_state st, const us_assignment *as)
{
    bool sticky = in->report.state == US_INST_DEMOTED || in->report.state == US_INST_FAILED ||
                  in->report.state == US_INST_FENCED;
    if (sticky && as && as->epoch == in->report.epoch)
        return;
    set_report(in, st, as ? as->epoch : 0, 0);
}

/* ---- virtual IPs ---- */

static uv_timer_t *announce_timer(us_instance *in)
{
    return &in->owner->announce_timers[in - in->owner->inst];
}

static void announce_cb(uv_timer_t *t)
{
    us_instance *in = t->data;
    const us_service_def *d = NULL;
    int k = us_state_find_service(in->owner->env.state, in->service);
    if (k >= 0)
        d = &in->owner->env.state->services.svc[k];
    for (int i = 0; i < in->n_vips_up; i++) {
        int rc = us_vip_announce(&in->vips_up[i]);
        if (rc != 0)
            us_warn("%s: cannot announce %s: %s", in->service, in->vips_up[i].text, strerror(-rc));
        else
            us_debug("%s: announced %s", in->service, in->vips_up[i].text);
    }
    if (--in->announce_left > 0) {
        uv_timer_start(t, announce_cb, d ? (uint64_t)d->announce_interval_ms : 100, 0);
    } else if (in->announce_repeat && d && d->announce_repeat_ms > 0) {
        in->announce_repeat = false;
        in->announce_left = d->announce_count > 0 ? d->announce_count : 1;
        uv_timer_start(t, announce_cb, (uint64_t)d->announce_repeat_ms, 0);
    }
}

static void announce_burst(us_instance *in, const us_service_def *d, bool with_repeat)
{
    if (in->n_vips_up == 0)
        return;
    in->announce_left = d->announce_count > 0 ? d->announce_count : 1;
    in->announce_repeat = with_repeat;
    /* The first announcement goes out now, right after the address was added: clients and
     * switches send to the old holder's MAC until it arrives, and a timer would wait for the next
     * turn of the loop (3-20 ms under load, measured). The rest follow on the timer. */
    uv_timer_stop(announce_timer(in));
    announce_cb(announce_timer(in));
}

/* Remove the VIPs we hold (idempotent), and tell the guardian it no longer needs to. */
static void vips_down(us_instance *in)
{
    uv_timer_stop(announce_timer(in));
    for (int i = 0; i < in->n_vips_up; i++) {
        int rc = us_vip_del(&in->vips_up[i]);
        if (rc != 0)
            us_error("%s: cannot remove %s: %s", in->service, in->vips_up[i].text, strerror(-rc));
        else
            us_info("%s: removed %s", in->service, in->vips_up[i].text);
        us_guardian_vip(in->owner->env.guardian, &in->vips_up[i], false);
    }
    in->n_vips_up = 0;
}

/* Without it, removing the primary address of a subnet removes the other addresses of that
 * subnet too, e.g. another service's VIP (keepalived offers the same setting). Best effort. */
static void promote_secondaries(const char *dev)
{
    char path[96];
    snprintf(path, sizeof path, "/proc/sys/net/ipv4/conf/%s/promote_secondaries", dev);
    FILE *f = fopen(path, "w");
    if (f) {
        fputs("1\n", f);
        fclose(f);
    }
}

/* Add the service's VIPs; the guardian learns each one first, so it can drop it when fencing. */
static int vips_up(us_instance *in, const us_service_def *d)
{
    for (int i = 0; i < d->n_vips; i++) {
        const us_vip *v = &d->vips[i];
        /* Unguarded, a VIP could outlive the agent: no guardian, no VIP. */
        int rc = us_guardian_vip(in->owner->env.guardian, v, true);
        if (rc != 0) {
            us_error("%s: the guardian cannot take %s: %s", in->service, v->text, strerror(-rc));
            return rc;
        }
        in->vips_up[in->n_vips_up++] = *v;
        if (v->family == AF_INET)
            promote_secondaries(v->dev);
        rc = us_vip_add(v);
        if (rc != 0) {
            us_error("%s: cannot add %s: %s", in->service, v->text, strerror(-rc));
            return rc;
        }
        us_info("%s: added %s", in->service, v->text);
    }
    announce_burst(in, d, true);
    return 0;
}

/* A VIP must be absent wherever the instance is not active, also after a crashed earlier run. */
static void vips_clean(us_instance *in, const us_service_def *d)
{
    if (in->vips_cleaned || !d)
        return;
    in->vips_cleaned = true;
    for (int i = 0; i < d->n_vips; i++)
        if (us_vip_present(&d->vips[i]) == 1) {
            us_warn("%s: removing stale %s (this node is not active)", in->service,
                    d->vips[i].text);
            us_vip_del(&d->vips[i]);
        }
}

/* Why this node cannot hold the service's VIPs, or NULL. */
static const char *vip_obstacle(const us_service_def *d, char *why, size_t len)
{
    if (d->n_vips == 0)
        return NULL;
    if (!us_vip_capable(why, len))
        return why;
    for (int i = 0; i < d->n_vips; i++)
        if (!us_vip_dev_exists(&d->vips[i])) {
            snprintf(why, len, "device %s of %s does not exist here", d->vips[i].dev,
                     d->vips[i].text);
            return why;
        }
    return NULL;
}

static bool quiet(us_instance *in)
{
    return in->proc == NULL && in->hook == NULL && in->pos == NULL;
}

/* Stop acting at once: kill everything; publish `st` once all is gone. */
static void fence_self(us_instance *in, us_inst_state st, int status, const char *why)
{
    us_instance *x = in;
    if (st == US_INST_FAILED)
        us_strlcpy(in->fail_cause, why, sizeof in->fail_cause);
    if (in->phase == US_PHASE_ACTIVE || in->phase == US_PHASE_PROMOTING)
        us_warn("%s: stopping active instance (epoch %llu): %s", in->service,
                (unsigned long long)in->epoch, why);
    in->abandoned_epoch = in->epoch > in->abandoned_epoch ? in->epoch : in->abandoned_epoch;
    x->fencing = true;
    x->pending.state = st;
    x->pending.epoch = in->epoch;
    x->pending.exit_status = status;
    in->phase = US_PHASE_DEMOTING;
    in->draining = false;
    vips_down(in);
    if (in->hook)
        us_proc_kill(in->hook, SIGKILL);
    if (in->pos)
        us_proc_kill(in->pos, SIGKILL);
    if (in->proc)
        us_proc_kill(in->proc, SIGKILL);
    if (quiet(in)) {
        x->fencing = false;
        set_report(in, x->pending.state, x->pending.epoch, x->pending.exit_status);
        in->phase = US_PHASE_IDLE;
    }
}

static const us_service_def *def_of(us_instances *a, const char *service);

static void become_active(us_instance *in)
{
    const us_service_def *d = def_of(in->owner, in->service);
    if (d && vips_up(in, d) != 0) {
        fence_self(in, US_INST_FAILED, 126, "cannot add the virtual IP");
        return;
    }
    in->phase = US_PHASE_ACTIVE;
    set_report(in, US_INST_ACTIVE, in->epoch, 0);
    us_info("%s: active (epoch %llu)", in->service, (unsigned long long)in->epoch);
    schedule_reconcile(in->owner);
}

static const us_service_def *def_of(us_instances *a, const char *service)
{
    us_instance *in = slot(a, service, false);
    int i = us_state_find_service_from(a->env.state, service, in ? in->state_idx : -1);
    return i >= 0 ? &a->env.state->services.svc[i] : NULL;
}

/* us_logs_def_at over the instance slots: only a service that has (had) an instance here writes
 * logs here. */
static const us_service_def *logs_def_at(void *ctx, int i)
{
    us_instances *a = ctx;
    if (i < 0 || i >= a->hi || !a->inst[i].used)
        return NULL;
    int k = us_state_find_service_from(a->env.state, a->inst[i].service, a->inst[i].state_idx);
    return k >= 0 ? &a->env.state->services.svc[k] : NULL;
}

static void promote_done(us_instance *in)
{
    const us_service_def *d = def_of(in->owner, in->service);
    if (!d) {
        fence_self(in, US_INST_DEMOTED, 0, "service was deleted");
        return;
    }
    if (d->standby == US_STANDBY_COLD && !in->proc) {
        if (spawn(in, d->run, "active", in->epoch, true, 0, "", &in->proc) != 0) {
            fence_self(in, US_INST_FAILED, 127, "cannot start the service");
            return;
        }
    }
    become_active(in);
}

static void demote_finished(us_instance *in)
{
    us_instances *a = in->owner;
    const us_service_def *d = def_of(a, in->service);
    in->abandoned_epoch = in->epoch > in->abandoned_epoch ? in->epoch : in->abandoned_epoch;
    set_report(in, US_INST_DEMOTED, in->epoch, 0);
    if (in->proc && d && d->standby == US_STANDBY_HOT) {
        /* The process stays as a standby: no longer fenced by the lease. */
        us_guardian_track(a->env.guardian, us_proc_pid(in->proc), in->service, in->epoch, false);
        in->phase = US_PHASE_STANDBY;
    } else {
        in->phase = US_PHASE_IDLE;
    }
    us_info("%s: demoted (epoch %llu)", in->service, (unsigned long long)in->epoch);
    schedule_reconcile(a);
}

static void run_demote_hook(us_instance *in)
{
    const us_service_def *d = def_of(in->owner, in->service);
    us_instance *x = in;
    if (d && d->demote[0]) {
        x->hook_kind = HOOK_DEMOTE;
        if (spawn(in, d->demote, "standby", in->epoch, false, d->hook_timeout_ms, ".hook",
                  &in->hook) == 0)
            return;
        x->hook_kind = HOOK_NONE;
    }
    demote_finished(in);
}

static void continue_demote(us_instance *in, const us_service_def *d);

/* Planned demotion. With a proxy, first let the open proxied connections finish (up to drain):
 * every proxy holds new connections from the moment the switchover was committed. */
static void begin_demote(us_instance *in, const us_service_def *d)
{
    int64_t now = us_now_ms();
    in->phase = US_PHASE_DEMOTING;
    if (d->proxy_listen[0] && d->drain_ms > 0) {
        in->draining = true;
        /* Peers report their open connections with their heartbeats: wait for two. */
        in->drain_min_ms = now + 2 * in->owner->env.cfg->timing.heartbeat_ms;
        in->drain_until_ms = now + d->drain_ms;
        us_info("%s: draining proxied connections (up to %d ms) before demoting", in->service,
                d->drain_ms);
        return;
    }
    continue_demote(in, d);
}

static void continue_demote(us_instance *in, const us_service_def *d)
{
    us_instance *x = in;
    in->draining = false;
    vips_down(in);
    us_info("%s: demoting (epoch %llu)", in->service, (unsigned long long)in->epoch);
    if (in->hook) { /* a promote hook still running: it must not finish the promotion */
        us_proc_kill(in->hook, SIGKILL);
    }
    if (d->standby == US_STANDBY_COLD && in->proc) {
        x->demote_stop_proc = true;
        us_proc_stop(in->proc, d->stop_timeout_ms);
        return; /* demote hook after the process is gone */
    }
    if (!in->hook)
        run_demote_hook(in);
}

static void begin_promote(us_instance *in, const us_service_def *d, uint64_t epoch)
{
    us_instances *a = in->owner;
    us_instance *x = in;
    in->phase = US_PHASE_PROMOTING;
    in->epoch = epoch;
    in->report.followed = 0; /* as a standby again, it follows whoever is active then */
    in->report.sync_applied = 0;
    in->sync_failures = 0;
    in->sync_retry_ms = 0;
    in->follow_cause[0] = '\0';
    us_info("%s: promoting (epoch %llu)", in->service, (unsigned long long)epoch);
    if (d->standby == US_STANDBY_HOT) {
        /* Fenced from here on: the promote hook turns the standby into the active. */
        if (in->proc)
            us_guardian_track(a->env.guardian, us_proc_pid(in->proc), in->service, epoch, true);
        else if (spawn(in, d->run, "active", epoch, true, 0, "", &in->proc) != 0) {
            fence_self(in, US_INST_FAILED, 127, "cannot start the service");
            return;
        }
    }
    if (d->promote[0]) {
        x->hook_kind = HOOK_PROMOTE;
        if (spawn(in, d->promote, "active", epoch, true, d->hook_timeout_ms, ".hook", &in->hook) ==
            0)
            return;
        x->hook_kind = HOOK_NONE;
        fence_self(in, US_INST_FAILED, 127, "cannot run the promote hook");
        return;
    }
    promote_done(in);
}

/* "the process exited (status 3)" / "the process was killed by signal 9" */
static void exit_text(int status, char *buf, size_t len)
{
    if (status > 128 && status < 128 + 65)
        snprintf(buf, len, "the process was killed by signal %d", status - 128);
    else
        snprintf(buf, len, "the process exited (status %d)", status);
}

/* The wait before attempt `failures` + 1 of something local that failed `failures` times in a
 * row (a standby process, a follow or sync hook): restart_backoff doubling from its min to its max.
 */
static int64_t backoff_ms(const us_service_def *d, int failures)
{
    int lo = d && d->restart_backoff_min_ms > 0 ? d->restart_backoff_min_ms : 200;
    int hi = d && d->restart_backoff_max_ms >= lo ? d->restart_backoff_max_ms : 30000;
    int64_t delay = lo;
    for (int i = 0; i < failures && delay < hi; i++)
        delay *= 2;
    return delay > hi ? hi : delay;
}

/* A hot standby's process died: start it again after an exponential backoff (restart_backoff);
 * the count starts over once a process ran for a whole restart window. */
static void standby_exited(us_instance *in, int status)
{
    const us_service_def *d = def_of(in->owner, in->service);
    int64_t now = us_now_ms();
    int window = d && d->restart_window_ms > 0 ? d->restart_window_ms : 60000;
    if (now - in->proc_started_ms >= window)
        in->standby_restarts = 0;
    int64_t delay = backoff_ms(d, in->standby_restarts);
    in->standby_restarts++;
    in->standby_restarts_total++;
    in->restart_after_ms = now + delay;
    char why[US_REASON_MAX / 2];
    exit_text(status, why, sizeof why);
    snprintf(in->restart_cause, sizeof in->restart_cause,
             "standby instance on %s: %s; restart %d in %lld ms", in->owner->env.cfg->name, why,
             in->standby_restarts, (long long)delay);
    us_warn("%s: %s", in->service, in->restart_cause);
    /* Its data may be what made it fail (a replica that cannot apply the active's stream): it
     * follows the active again before it starts, the hook's chance to repair (rewind, copy). */
    in->report.followed = 0;
    report_now(in->owner); /* restarted by a later tick once the backoff is over */
}

/* ---- following the active (hot standbys of a service with `follow`) ---- */

static void follow_done(us_instance *in, int status)
{
    us_instances *a = in->owner;
    const us_service_def *d = def_of(a, in->service);
    int k = us_state_find_service_from(a->env.state, in->service, in->state_idx);
    const us_assignment *as = k >= 0 ? &a->env.state->asg[k] : NULL;
    bool killed = in->follow_killed;
    in->follow_killed = false;
    if (killed || !d || !as || as->epoch != in->follow_epoch || in->phase != US_PHASE_STANDBY)
        return; /* stopped because the active changed again (or the role): step() goes on */
    if (status == 0) {
        us_info("%s: following %s (epoch %llu)", in->service, in->follow_node,
                (unsigned long long)in->follow_epoch);
        in->report.followed = in->follow_epoch;
        in->follow_failures = 0;
        in->follow_cause[0] = '\0';
    } else {
        int64_t delay = backoff_ms(d, in->follow_failures);
        in->follow_failures++;
        in->follow_retry_ms = us_now_ms() + delay;
        char why[US_REASON_MAX / 2];
        if (status == US_PROC_TIMEOUT)
            snprintf(why, sizeof why, "timed out after %d ms", d->follow_timeout_ms);
        else
            exit_text(status, why, sizeof why);
        snprintf(in->follow_cause, sizeof in->follow_cause,
                 "follow hook for %.48s (epoch %llu) failed: %.100s; again in %lld ms",
                 in->follow_node, (unsigned long long)in->follow_epoch, why, (long long)delay);
        us_warn("%s: %s", in->service, in->follow_cause);
    }
    refresh_obs(in);
    report_now(a);
}

/* A listed standby: follow the current active if the service says how. Returns whether the
 * standby process may run now: the service has no `follow` (or is cold), no node is active, or
 * this node followed the current active. While no node is active nothing is run or stopped. */
static bool follow_active(us_instance *in, const us_service_def *d, const us_assignment *as,
                          int64_t now)
{
    us_instances *a = in->owner;
    us_instance *x = in;
    bool hook_runs = in->hook && x->hook_kind == HOOK_FOLLOW;
    if (!d->follow[0] || d->standby != US_STANDBY_HOT) {
        if (hook_runs)
            us_proc_kill(in->hook, SIGKILL);
        in->follow_cause[0] = '\0';
        in->report.followed = 0;
        return !hook_runs;
    }
    bool target = as->active[0] && strcmp(as->active, a->env.cfg->name) != 0;
    if (hook_runs) {
        if (!target || as->epoch != in->follow_epoch) {
            us_info("%s: the active changed while following it: stopping the follow hook",
                    in->service);
            in->follow_killed = true; /* not a failure of the hook */
            us_proc_kill(in->hook, SIGKILL);
        }
        return false;
    }
    if (!target && in->follow_cause[0]) {
        /* Nothing to follow now: a failure to follow a lost active says nothing against this
         * standby (R11 still ranks it after those that followed). */
        in->follow_cause[0] = '\0';
        if (refresh_obs(in))
            report_now(a);
    }
    if (!target || in->report.followed == as->epoch)
        return true;
    if (in->follow_epoch != as->epoch) { /* a new active: its own attempts, its own verdict */
        in->follow_epoch = as->epoch;
        us_strlcpy(in->follow_node, as->active, sizeof in->follow_node);
        in->follow_failures = 0;
        in->follow_retry_ms = 0;
        if (in->follow_cause[0]) {
            in->follow_cause[0] = '\0';
            if (refresh_obs(in))
                report_now(a);
        }
    }
    if (now < in->follow_retry_ms || in->hook)
        return false;
    us_info("%s: following %s (epoch %llu): running the follow hook", in->service, as->active,
            (unsigned long long)as->epoch);
    x->hook_kind = HOOK_FOLLOW;
    if (spawn(in, d->follow, "standby", as->epoch, false, d->follow_timeout_ms, ".hook",
              &in->hook) != 0) {
        x->hook_kind = HOOK_NONE;
        follow_done(in, 127);
    }
    return false;
}

/* ---- the synchronous set (the active of a service with `synchronous`) ---- */

static void sync_done(us_instance *in, int status)
{
    us_instances *a = in->owner;
    const us_service_def *d = def_of(a, in->service);
    if (status == 0) {
        us_info("%s: synchronous standbys set (sync_gen %llu)", in->service,
                (unsigned long long)in->sync_gen);
        in->report.sync_applied = in->sync_gen;
        in->sync_failures = 0;
        report_now(a);
        return;
    }
    int64_t delay = backoff_ms(d, in->sync_failures);
    in->sync_failures++;
    in->sync_retry_ms = us_now_ms() + delay;
    char why[US_REASON_MAX / 2];
    if (status == US_PROC_TIMEOUT)
        snprintf(why, sizeof why, "timed out");
    else
        exit_text(status, why, sizeof why);
    us_warn("%s: sync hook (sync_gen %llu) failed: %s; again in %lld ms (the synchronous set "
            "stays shrunk meanwhile)",
            in->service, (unsigned long long)in->sync_gen, why, (long long)delay);
}

/* R13: the active runs `sync` for each new sync_gen of its assignment, with the standbys it is
 * to wait for, and reports the sync_gen it succeeded for. Not while another hook runs. */
static void sync_step(us_instance *in, const us_service_def *d, const us_assignment *as,
                      int64_t now)
{
    if (!d->sync[0] || d->synchronous == 0 || as->sync_gen == 0 ||
        as->sync_gen == in->report.sync_applied || in->hook || now < in->sync_retry_ms)
        return;
    if (in->sync_gen != as->sync_gen) {
        in->sync_gen = as->sync_gen;
        in->sync_failures = 0;
    }
    char env[US_MAX_NODES * US_NAME_MAX + 32];
    size_t used = (size_t)snprintf(env, sizeof env, "UNDERSTUDY_SYNC_STANDBYS=");
    for (int i = 0; i < as->n_sync_want && used < sizeof env; i++)
        used +=
            (size_t)snprintf(env + used, sizeof env - used, "%s%s", i ? " " : "", as->sync_want[i]);
    us_info("%s: running the sync hook (%s, sync_gen %llu)", in->service, env,
            (unsigned long long)as->sync_gen);
    us_instance *x = in;
    x->hook_kind = HOOK_SYNC;
    if (spawn_to(in, d->sync, "active", in->epoch, true, d->hook_timeout_ms, ".hook", NULL, env,
                 &in->hook) != 0) {
        x->hook_kind = HOOK_NONE;
        sync_done(in, 127);
    }
}

/* ---- position (a service with `position`) ---- */

static void position_path(us_instance *in, char *buf, size_t len)
{
    snprintf(buf, len, "%s/run/%s.position", in->owner->env.cfg->data_dir, in->service);
}

static void set_position(us_instance *in, int64_t pos)
{
    if (in->report.position == pos)
        return;
    in->report.position = pos;
    if (in->state_idx >= 0 && in->state_idx < US_MAX_SERVICES)
        in->owner->idle_of[in->state_idx] = 0;
}

static void position_done(us_instance *in, int status)
{
    char path[PATH_MAX + 96], text[64];
    position_path(in, path, sizeof path);
    ssize_t n = -1;
    int fd = status == 0 ? open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW) : -1;
    if (fd >= 0) {
        n = read(fd, text, sizeof text); /* more than a number's worth: refused below */
        close(fd);
    }
    int64_t pos;
    if (n >= 0 && (size_t)n < sizeof text && us_position_parse(text, (size_t)n, &pos)) {
        set_position(in, pos);
        in->pos_warned = false;
        if (in->report.position_gen != in->pos_gen) {
            in->report.position_gen = in->pos_gen;
            report_now(in->owner); /* the leader may be waiting for it (R12) */
        }
        return;
    }
    if (in->fencing || in->phase == US_PHASE_IDLE)
        return; /* stopped with the instance */
    set_position(in, -1);
    if (!in->pos_warned) {
        in->pos_warned = true;
        if (status != 0)
            us_warn("%s: the position command failed (%s %d): position unknown", in->service,
                    status == US_PROC_TIMEOUT ? "timed out, status" : "status", status);
        else
            us_warn("%s: the position command printed no number (expected one decimal number, "
                    "0..%lld): position unknown",
                    in->service, (long long)INT64_MAX);
    }
}

/* `position` runs every check interval (1 s without checks) while the process runs as active or
 * hot standby, and at once when the assignment changed (a release: the leader waits for
 * positions read after it, R12); what it printed is reported with the assignment's gen at the
 * run's start, and stays reported once the process stopped, until the node has no role in the
 * service. A run that fails makes it unknown. */
static void sync_position(us_instance *in, const us_service_def *d, const us_assignment *as,
                          int64_t now)
{
    bool hot = d && d->standby == US_STANDBY_HOT;
    bool want = d && d->position[0] && in->proc && !in->fencing && !in->adopting &&
                (hot ? in->phase != US_PHASE_IDLE : in->phase == US_PHASE_ACTIVE);
    if (!want) {
        if (in->pos)
            us_proc_kill(in->pos, SIGKILL);
        /* A failed or stopped instance keeps reporting where its data was (the leader judges
         * a failover by it, R12) until it has no role here any more. */
        if (in->report.state == US_INST_NONE || !d || !d->position[0])
            set_position(in, -1);
        return;
    }
    if (as && as->gen > in->report.position_gen && as->gen > in->pos_gen)
        in->pos_next_ms = 0; /* read again for this assignment */
    if (in->pos || now < in->pos_next_ms)
        return;
    in->pos_gen = as ? as->gen : 0;
    int interval = d->n_checks > 0 ? d->check_interval_ms : 1000;
    int timeout = d->check_timeout_ms > 1000 ? d->check_timeout_ms : 1000;
    in->pos_next_ms = now + interval;
    char path[PATH_MAX + 96];
    position_path(in, path, sizeof path);
    bool active = in->phase == US_PHASE_ACTIVE || in->phase == US_PHASE_PROMOTING;
    if (spawn_to(in, d->position, active ? "active" : "standby", in->epoch, false, timeout,
                 ".position", path, NULL, &in->pos) != 0)
        position_done(in, 127);
}

static void on_exit_cb(us_proc *p, int status, void *data)
{
    us_instance *in = data;
    us_instances *a = in->owner;
    us_instance *x = in;
    us_guardian_untrack(a->env.guardian, us_proc_pid(p));
    if (p == in->pos) {
        in->pos = NULL;
        position_done(in, status);
    } else if (p == in->hook) {
        in->hook = NULL;
        int kind = x->hook_kind;
        x->hook_kind = HOOK_NONE;
        if (x->fencing) {
            /* fall through to the quiet check below */
        } else if (kind == HOOK_PROMOTE && in->phase == US_PHASE_PROMOTING) {
            if (status == 0) {
                promote_done(in);
            } else {
                char why[US_REASON_MAX];
                snprintf(why, sizeof why, "promote hook failed (status %d)", status);
                us_warn("%s: %s", in->service, why);
                fence_self(in, US_INST_FAILED, status, why);
            }
        } else if (kind == HOOK_DEMOTE && in->phase == US_PHASE_DEMOTING) {
            if (status != 0) {
                /* A failure, not a demotion: the hook did not hand everything over, so the
                 * decision must not take it for a planned move (R13 holds). */
                snprintf(in->fail_cause, sizeof in->fail_cause, "demote hook failed (status %d)",
                         status);
                us_warn("%s: %s; killing the instance", in->service, in->fail_cause);
                if (in->proc)
                    us_proc_kill(in->proc, SIGKILL);
                x->fencing = true;
                x->pending.state = US_INST_FAILED;
                x->pending.epoch = in->epoch;
                x->pending.exit_status = status;
            } else {
                demote_finished(in);
            }
        } else if ((kind == HOOK_PROMOTE || kind == HOOK_SYNC) && in->phase == US_PHASE_DEMOTING &&
                   !x->demote_stop_proc && !in->draining) {
            run_demote_hook(in); /* the killed promote (or sync) hook is gone: demote now */
        } else if (kind == HOOK_FOLLOW) {
            follow_done(in, status);
        } else if (kind == HOOK_SYNC && in->phase == US_PHASE_ACTIVE) {
            sync_done(in, status);
        }
    } else if (p == in->proc) {
        in->proc = NULL;
        if (x->fencing) {
            /* expected */
        } else if (in->phase == US_PHASE_ACTIVE || in->phase == US_PHASE_PROMOTING) {
            char why[US_REASON_MAX];
            exit_text(status, why, sizeof why);
            us_warn("%s: active instance %s", in->service, why);
            fence_self(in, US_INST_FAILED, status, why);
        } else if (in->phase == US_PHASE_DEMOTING && x->demote_stop_proc) {
            x->demote_stop_proc = false;
            if (!in->hook)
                run_demote_hook(in);
        } else if (in->phase == US_PHASE_STANDBY && in->hook && x->hook_kind == HOOK_FOLLOW) {
            /* The follow hook stopped it (to rewind, to copy the data afresh): it starts again
             * once the hook succeeded. */
            us_info("%s: standby process stopped while following the active", in->service);
        } else if (in->phase == US_PHASE_STANDBY) {
            standby_exited(in, status);
        }
    }
    if (x->fencing && quiet(in)) {
        x->fencing = false;
        set_report(in, x->pending.state, x->pending.epoch, x->pending.exit_status);
        in->phase = US_PHASE_IDLE;
    }
    schedule_reconcile(a);
}

/* ---- health checks ---- */

static void checker_cb(us_checker *c, void *data)
{
    us_instance *in = data;
    const us_check_status *cs = us_checker_status(c);
    if (cs->health == US_HEALTH_UNHEALTHY)
        us_warn("%s: unhealthy: %s", in->service, cs->cause);
    else
        us_info("%s: %s", in->service, us_health_name(cs->health));
    if (refresh_obs(in))
        report_now(in->owner);
}

/* Which check settings a running checker was started with. */
static uint64_t checks_fingerprint(const us_service_def *d)
{
    const int v[] = {d->n_checks, d->check_interval_ms, d->check_timeout_ms, d->rise,
                     d->fall,     d->check_status_min,  d->check_status_max, d->check_grace_ms};
    uint64_t h = 1469598103934665603ULL;
    /* Who exec checks run as and their environment count too. */
    const unsigned char *parts[] = {(const unsigned char *)v, (const unsigned char *)d->checks,
                                    (const unsigned char *)d->user, (const unsigned char *)d->group,
                                    (const unsigned char *)d->env};
    size_t lens[] = {sizeof v, sizeof d->checks[0] * (size_t)d->n_checks, sizeof d->user,
                     sizeof d->group, sizeof d->env[0] * (size_t)d->n_env};
    for (int k = 0; k < 5; k++)
        for (size_t i = 0; i < lens[k]; i++)
            h = (h ^ parts[k][i]) * 1099511628211ULL;
    return h;
}

static void stop_checker(us_instance *in)
{
    if (!in->checker)
        return;
    us_checker_stop(in->checker);
    in->checker = NULL;
    in->checker_pid = 0;
    refresh_obs(in);
}

/* Checks run while the process serves as active, or runs as a hot standby (with its process). */
static void sync_checker(us_instance *in, const us_service_def *d)
{
    bool hot = d && d->standby == US_STANDBY_HOT;
    bool want = d && d->n_checks > 0 && in->proc && !in->fencing && !in->adopting &&
                (hot ? in->phase != US_PHASE_IDLE : in->phase == US_PHASE_ACTIVE);
    int pid = in->proc ? (int)us_proc_pid(in->proc) : 0;
    /* Every service passes here on every tick: the fingerprint only where a checker runs. */
    if (in->checker && (!want || pid != in->checker_pid || checks_fingerprint(d) != in->checker_fp))
        stop_checker(in);
    if (!want || in->checker)
        return;
    us_instances *a = in->owner;
    us_cred cred;
    char why[US_REASON_MAX];
    if (!service_cred(a, d, &cred, why, sizeof why))
        return; /* the process itself could not have started either */
    char e_svc[US_NAME_MAX + 32], e_node[US_NAME_MAX + 32], e_dir[PATH_MAX + 32];
    snprintf(e_svc, sizeof e_svc, "UNDERSTUDY_SERVICE=%s", in->service);
    snprintf(e_node, sizeof e_node, "UNDERSTUDY_NODE=%s", a->env.cfg->name);
    snprintf(e_dir, sizeof e_dir, "UNDERSTUDY_DATA_DIR=%s", a->env.cfg->data_dir);
    us_active_env act; /* as when the checker starts */
    us_active_env_of(a->env.state, in->service, &act);
    const char *uenv[] = {e_svc, e_node, e_dir, act.node, act.host, act.epoch, act.standbys, NULL};
    us_env_spec spec = us_env_spec_for(d, &cred, uenv);
    char **env = us_env_build(&spec);
    if (!env)
        return;
    char log_path[PATH_MAX + 96];
    snprintf(log_path, sizeof log_path, "%s/logs/%s.check.log", a->env.cfg->data_dir, in->service);
    in->checker = us_checker_start(a->env.loop, d, a->env.cwd, (const char *const *)env, &cred,
                                   log_path, checker_cb, in);
    free(env);
    in->checker_pid = pid;
    in->checker_fp = checks_fingerprint(d);
}

static bool listed_standby(const us_assignment *as, const char *me)
{
    for (int i = 0; i < as->n_standbys; i++)
        if (strcmp(as->standbys[i], me) == 0)
            return true;
    return false;
}

static void step(us_instances *a, us_instance *in, const us_service_def *d, const us_assignment *as)
{
    int64_t now = us_now_ms();
    bool lease_ok = a->env.lease_ok(a->env.data, now, a->env.cfg->timing.demote_before_ms);
    bool mine = d && as && strcmp(as->active, a->env.cfg->name) == 0 &&
                (as->active_inc == a->env.inc ||
                 (a->env.adopt_inc && as->active_inc == a->env.adopt_inc)) &&
                as->epoch > in->abandoned_epoch;
    bool paused = as && as->paused;

    if (in->adopting) {
        /* Only the lease end stops it (as the guardian would) until our state caught up and our
         * own renewals carry it: a reserve-based stop here would turn a planned restart into a
         * failover. */
        if (!a->env.lease_ok(a->env.data, now, 0)) {
            in->adopting = false;
            if (in->phase == US_PHASE_ACTIVE)
                fence_self(in, US_INST_DEMOTED, 0, "lease ran out before the adoption completed");
            return;
        }
        if (a->env.state->version < a->adopt_version ||
            !a->env.lease_ok(a->env.data, a->adopt_lease_ms, 0))
            return;
        in->adopting = false;
        us_info("%s: adoption complete (%s, epoch %llu)", in->service,
                in->phase == US_PHASE_ACTIVE ? "active" : "standby", (unsigned long long)in->epoch);
        if (in->phase == US_PHASE_ACTIVE && mine && as->epoch == in->epoch && d &&
            vips_up(in, d) != 0) {
            fence_self(in, US_INST_FAILED, 126, "cannot add the virtual IP");
            return;
        }
    }

    switch (in->phase) {
    case US_PHASE_PROMOTING:
    case US_PHASE_ACTIVE:
        /* Fencing stays on while paused: pausing must never make two actives possible. */
        if (!lease_ok)
            fence_self(in, US_INST_DEMOTED, 0, "lease about to run out without renewal");
        else if (!mine || as->epoch != in->epoch)
            fence_self(in, US_INST_DEMOTED, 0, "the active role was given to another node");
        else if (paused)
            return;
        else if (as->recover && in->phase == US_PHASE_ACTIVE)
            fence_self(in, US_INST_FAILED, 0,
                       in->report.cause[0] ? in->report.cause : "health checks failed");
        else if (as->demoting)
            begin_demote(in, d);
        else if (in->phase == US_PHASE_ACTIVE)
            sync_step(in, d, as, now);
        return;
    case US_PHASE_DEMOTING:
        if (!lease_ok && (in->draining || in->n_vips_up ||
                          (in->proc && !in->fencing && (!d || d->standby == US_STANDBY_COLD)))) {
            fence_self(in, US_INST_DEMOTED, 0, "lease ran out during demotion");
        } else if (in->draining && d) {
            int open = a->env.proxies_open_total(a->env.data, in->service, in->epoch);
            if (now >= in->drain_until_ms || (now >= in->drain_min_ms && open == 0)) {
                if (open)
                    us_warn("%s: drain time over with %d connection(s) still open", in->service,
                            open);
                continue_demote(in, d);
            }
        }
        return;
    case US_PHASE_IDLE:
    case US_PHASE_STANDBY:
        break;
    }
    if (paused)
        return; /* processes stay as they are */
    if (mine && as->demoting) {
        /* Asked to hand over a role we never took up: nothing acts, confirm at once; unless it
         * ended otherwise under this epoch (a failed demote hook): that stays what it says. */
        in->epoch = as->epoch;
        in->abandoned_epoch = as->epoch;
        if (!(in->report.epoch == as->epoch &&
              (in->report.state == US_INST_FAILED || in->report.state == US_INST_FENCED)))
            set_report(in, US_INST_DEMOTED, as->epoch, 0);
        return;
    }
    vips_clean(in, d);
    if (mine && lease_ok && !a->env.closing(a->env.data)) {
        char why[320];
        us_cred cred;
        if (vip_obstacle(d, why, sizeof why) || !service_cred(a, d, &cred, why, sizeof why)) {
            us_error("%s: refusing the active role: %s", in->service, why);
            in->epoch = as->epoch;
            in->abandoned_epoch = as->epoch;
            snprintf(in->fail_cause, sizeof in->fail_cause, "refused the active role: %.200s", why);
            set_report(in, US_INST_FAILED, as->epoch, 126);
            in->report.refused = true; /* sent with the report, which goes out from the loop */
            return;
        }
        if (in->hook) { /* a standby's follow hook (a standby runs no other): promote once gone */
            us_proc_kill(in->hook, SIGKILL);
            return;
        }
        begin_promote(in, d, as->epoch);
        return;
    }
    if (d && as && (listed_standby(as, a->env.cfg->name) || mine)) {
        in->phase = US_PHASE_STANDBY;
        bool may_run = follow_active(in, d, as, now);
        if (d->standby == US_STANDBY_HOT && !in->proc && now >= in->restart_after_ms && may_run) {
            char why[US_REASON_MAX];
            us_cred cred;
            if (!service_cred(a, d, &cred, why, sizeof why)) {
                /* Said once (status shows it as the restart cause); tried again each tick, so
                 * that creating the account is enough. */
                if (strcmp(in->restart_cause, why) != 0) {
                    us_error("%s: cannot run the standby instance: %s", in->service, why);
                    us_strlcpy(in->restart_cause, why, sizeof in->restart_cause);
                    report_now(a);
                }
            } else {
                spawn(in, d->run, "standby", as->epoch, false, 0, "", &in->proc);
            }
        }
        passive_report(in, US_INST_STANDBY, as);
        return;
    }
    /* Not ours in any role. A hot process stays while nobody holds the role (a release that
     * waits for the standbys' positions, R12): the next decision most likely lists this node as
     * a standby again (a demoted active, in a switchover), and a restart would cost a replica its
     * state. It runs no role meanwhile: nothing is fenced that it could do. */
    bool hold = d && as && !as->active[0] && d->standby == US_STANDBY_HOT;
    if (hold && in->proc && in->phase == US_PHASE_STANDBY) {
        /* Still a standby process (stopped below once the role is given elsewhere without
         * this node): nothing to follow while nobody is active. */
        if (in->hook && in->hook_kind == HOOK_FOLLOW) {
            in->follow_killed = true;
            us_proc_kill(in->hook, SIGKILL);
        }
        return;
    }
    if (in->proc && in->phase == US_PHASE_STANDBY)
        us_proc_stop(in->proc, d ? d->stop_timeout_ms : 2000);
    if (in->hook && in->hook_kind == HOOK_FOLLOW) {
        in->follow_killed = true;
        us_proc_kill(in->hook, SIGKILL);
    }
    in->report.followed = 0;
    in->follow_epoch = 0;
    if (in->follow_cause[0]) {
        in->follow_cause[0] = '\0';
        refresh_obs(in);
    }
    in->phase = US_PHASE_IDLE;
    passive_report(in, US_INST_NONE, as);
    in->idle_at_touched = in->proc || in->adopting || !as || in->state_idx < 0
                              ? 0
                              : a->env.state->touched[in->state_idx] + 1;
}

void us_instances_reconcile(us_instances *a)
{
    const us_state *s = a->env.state;
    int with_slot = 0; /* state services that have a slot */
    for (int i = 0; i < s->services.n; i++) {
        if (a->idle_of[i] != 0 && a->idle_of[i] == s->touched[i] + 1) {
            with_slot++;
            continue; /* as it was: no role, nothing running, nothing changed about it */
        }
        int h = a->slot_of[i];
        us_instance *in =
            h < a->hi && a->inst[h].used && strcmp(a->inst[h].service, s->services.svc[i].name) == 0
                ? &a->inst[h]
                : slot(a, s->services.svc[i].name, true);
        a->idle_of[i] = 0;
        if (in) {
            with_slot++;
            in->state_idx = i;
            a->slot_of[i] = (int)(in - a->inst);
            step(a, in, &s->services.svc[i], &s->asg[i]);
            sync_checker(in, &s->services.svc[i]);
            sync_position(in, &s->services.svc[i], &s->asg[i], us_now_ms());
            if (in->idle_at_touched == s->touched[i] + 1 && in->phase == US_PHASE_IDLE &&
                !in->proc && !in->checker && !in->pos && !in->adopting) {
                a->idle_of[i] = in->idle_at_touched;
                a->idle_silent[i] = us_instance_silent(in);
            }
        }
    }
    /* Instances of services the state no longer has: only when some slot is not one of its. */
    for (int i = 0; a->n_used > with_slot && i < a->hi; i++) {
        us_instance *in = &a->inst[i];
        if (!in->used || us_state_find_service_from(s, in->service, in->state_idx) >= 0)
            continue;
        if (in->adopting) {
            /* Our state may not show the service yet: judge once it caught up. */
            step(a, in, NULL, NULL);
            if (in->adopting)
                continue;
        }
        /* Deleted service: stop whatever runs; forget it once quiet. */
        if (in->phase == US_PHASE_ACTIVE || in->phase == US_PHASE_PROMOTING)
            fence_self(in, US_INST_DEMOTED, 0, "service deleted");
        else if (in->proc && in->phase != US_PHASE_DEMOTING)
            us_proc_stop(in->proc, 2000);
        if (in->hook && in->hook_kind == HOOK_FOLLOW)
            us_proc_kill(in->hook, SIGKILL);
        if (in->pos)
            us_proc_kill(in->pos, SIGKILL);
        stop_checker(in);
        if (quiet(in) && in->phase != US_PHASE_DEMOTING) {
            in->used = false;
            a->n_used--;
        }
    }
    us_notify_pump(); /* after every FSM change: new events may be ours to report */
    us_logs_maintain(a->env.loop, a->env.cfg->data_dir, logs_def_at, a, a->hi, us_now_ms());
}

int us_instances_speaking(us_instances *a, bool (*keep)(void *ctx, int service_index), void *ctx,
                          const us_instance **out)
{
    const us_state *s = a->env.state;
    int n = 0, with_slot = 0;
    for (int i = 0; i < s->services.n; i++) {
        if (a->idle_of[i] != 0 && a->idle_of[i] == s->touched[i] + 1) {
            with_slot++; /* an idle instance has a slot, and nothing about it changed since */
            if (a->idle_silent[i] && !(keep && keep(ctx, i)))
                continue;
        }
        int h = a->slot_of[i];
        const us_instance *in = h < a->hi && a->inst[h].used && a->inst[h].state_idx == i &&
                                        strcmp(a->inst[h].service, s->services.svc[i].name) == 0
                                    ? &a->inst[h]
                                    : slot(a, s->services.svc[i].name, false);
        if (!in)
            continue;
        with_slot += !(a->idle_of[i] != 0 && a->idle_of[i] == s->touched[i] + 1);
        if (!us_instance_silent(in) || (keep && keep(ctx, i)))
            out[n++] = in;
    }
    /* Instances of services the state no longer has (stopping): only when some slot is not one
     * of the state's services. */
    for (int h = 0; a->n_used > with_slot && h < a->hi; h++) {
        const us_instance *in = &a->inst[h];
        if (in->used && us_state_find_service_from(s, in->service, in->state_idx) < 0 &&
            n < US_MAX_SERVICES)
            out[n++] = in;
    }
    return n;
}

void us_instances_guardian_event(us_instances *a, const us_guardian_event *ev)
{
    us_instance *in = slot(a, ev->service, false);
    us_warn("%s: the guardian fenced process group %d (epoch %llu): lease ran out", ev->service,
            (int)ev->pgid, (unsigned long long)ev->epoch);
    if (!in)
        return;
    if (in->epoch == ev->epoch && (in->phase == US_PHASE_ACTIVE || in->phase == US_PHASE_PROMOTING))
        fence_self(in, US_INST_FENCED, 137, "guardian fenced it");
}

static bool notify_is_leader(void *data)
{
    us_instances *a = data;
    return a->env.is_leader(a->env.data);
}

us_instances *us_instances_start(const us_instances_env *env)
{
    us_instances *a = calloc(1, sizeof *a);
    if (!a)
        return NULL;
    a->env = *env;
    for (int i = 0; i < US_MAX_SERVICES; i++) {
        uv_timer_init(a->env.loop, &a->announce_timers[i]);
        a->announce_timers[i].data = &a->inst[i];
    }
    us_notify_init(&(us_notify_env){.loop = env->loop,
                                    .node = env->cfg->name,
                                    .data_dir = env->cfg->data_dir,
                                    .cwd = env->cwd,
                                    .state = env->state,
                                    .is_leader = notify_is_leader,
                                    .data = a});
    return a;
}

void us_instances_free(us_instances *x)
{
    free(x);
}

void us_instances_reannounce(us_instances *a)
{
    for (int i = 0; i < a->hi; i++) {
        us_instance *in = &a->inst[i];
        const us_service_def *d = in->used ? def_of(a, in->service) : NULL;
        if (d && in->phase == US_PHASE_ACTIVE && in->n_vips_up) {
            us_info("%s: membership changed: announcing its virtual IPs again", in->service);
            announce_burst(in, d, false);
        }
    }
}

void us_instances_kill_all(us_instances *a)
{
    us_notify_stop();
    for (int i = 0; i < a->hi; i++) {
        us_instance *in = &a->inst[i];
        if (!in->used)
            continue;
        vips_down(in);
        stop_checker(in);
        if (in->hook)
            us_proc_kill(in->hook, SIGKILL);
        if (in->pos)
            us_proc_kill(in->pos, SIGKILL);
        if (in->proc)
            us_proc_kill(in->proc, SIGKILL);
    }
}

bool us_instances_quiet(us_instances *a)
{
    if (!us_notify_quiet() || us_logs_busy())
        return false;
    for (int i = 0; i < a->hi; i++)
        if (a->inst[i].used && !quiet(&a->inst[i]))
            return false;
    return true;
}

bool us_instances_busy(us_instances *a)
{
    for (int i = 0; i < a->hi; i++) {
        us_instance *in = &a->inst[i];
        if (in->used && (in->phase == US_PHASE_ACTIVE || in->phase == US_PHASE_PROMOTING ||
                         in->phase == US_PHASE_DEMOTING))
            return true;
    }
    return false;
}

/* ---- planned restart (SIGUSR2) ---- */

int us_instances_adopt(us_instances *a, const us_guardian_group *g, uint64_t inc, uint64_t version,
                       int64_t lease_until_ms)
{
    a->env.adopt_inc = inc;
    us_instance *in = slot(a, g->service, true);
    if (!in || in->proc)
        return -EEXIST;
    char pidfile[PATH_MAX + 96];
    snprintf(pidfile, sizeof pidfile, "%s/run/%s.pid", a->env.cfg->data_dir, g->service);
    int rc = us_proc_adopt(a->env.loop, pidfile, g->pgid, on_exit_cb, in, &in->proc);
    if (rc != 0) {
        if (!in->proc && in->phase == US_PHASE_IDLE && !in->hook) {
            in->used = false;
            a->n_used--;
        }
        return rc;
    }
    memset(a->idle_of, 0, sizeof a->idle_of); /* nothing is idle that an adoption may touch */
    a->adopt_version = version > a->adopt_version ? version : a->adopt_version;
    a->adopt_lease_ms = lease_until_ms;
    in->adopting = true;
    in->epoch = g->epoch;
    in->proc_started_ms = us_now_ms();
    in->phase = g->fence ? US_PHASE_ACTIVE : US_PHASE_STANDBY;
    in->report.state = g->fence ? US_INST_ACTIVE : US_INST_STANDBY;
    in->report.epoch = g->epoch;
    us_info("%s: adopted the %s process group %d (epoch %llu) from the earlier agent", in->service,
            g->fence ? "active" : "standby", (int)g->pgid, (unsigned long long)g->epoch);
    return 0;
}

bool us_instances_settled(us_instances *a)
{
    for (int i = 0; i < US_MAX_SERVICES; i++) {
        us_instance *in = &a->inst[i];
        if (!in->used)
            continue;
        /* A follow hook may copy a whole database: the next agent runs it again instead. */
        if ((in->hook && in->hook_kind != HOOK_FOLLOW) || in->fencing || in->draining ||
            in->phase == US_PHASE_PROMOTING || in->phase == US_PHASE_DEMOTING)
            return false;
    }
    return true;
}

void us_instances_detach(us_instances *a)
{
    us_notify_stop();
    for (int i = 0; i < US_MAX_SERVICES; i++) {
        us_instance *in = &a->inst[i];
        if (!in->used)
            continue;
        uv_timer_stop(announce_timer(in));
        stop_checker(in);
        if (in->hook)
            us_proc_kill(in->hook, SIGKILL);
        if (in->pos)
            us_proc_kill(in->pos, SIGKILL);
        bool keep = in->proc && !in->fencing &&
                    (in->phase == US_PHASE_ACTIVE || in->phase == US_PHASE_STANDBY);
        if (in->proc && !keep) {
            us_proc_kill(in->proc, SIGKILL);
            continue;
        }
        if (keep) {
            /* The guardian holds it (and its VIPs) for the next agent. */
            us_info("%s: leaving the %s process group %d to the next agent", in->service,
                    in->phase == US_PHASE_ACTIVE ? "active" : "standby",
                    (int)us_proc_pid(in->proc));
            us_proc_release(in->proc);
            in->proc = NULL;
            in->n_vips_up = 0;
        } else {
            vips_down(in);
        }
    }
}
