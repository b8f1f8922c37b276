/* decide.c — the decision function; the rules (R0..R8 for self-healing) are in
 * docs/decisions.md. */
#include "core/decide.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#define US_WAIT (-2)
/* R12: not in this round: the release commits first, then the standbys read their positions. */
#define US_LATER (-3)

typedef struct dur {
    char s[32];
} dur;

/* "600 s" for whole seconds, else "250 ms": configured durations read as the operator wrote them.
 */
static dur fmt_dur(int64_t ms)
{
    dur d;
    if (ms >= 1000 && ms % 1000 == 0)
        snprintf(d.s, sizeof d.s, "%lld s", (long long)(ms / 1000));
    else
        snprintf(d.s, sizeof d.s, "%lld ms", (long long)ms);
    return d;
}

/* Append to a reason; reasons are cut at US_REASON_MAX, which is fine for a human text. */
static void __attribute__((format(printf, 3, 4)))
append(char *buf, size_t len, const char *fmt, ...)
{
    size_t used = strlen(buf);
    if (used >= len - 1)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf + used, len - used, fmt, ap);
    va_end(ap);
}

/* What node n reports about its instance of service s. */
static const us_inst_obs *obs(const us_decide_input *in, int s, int n)
{
    return in->inst[(size_t)s * (size_t)in->n_nodes + (size_t)n];
}

static int find_node(const us_decide_input *in, const char *name)
{
    for (int i = 0; i < in->n_nodes; i++)
        if (strcmp(in->nodes[i].name, name) == 0)
            return i;
    return -1;
}

static bool listed(const us_service_def *d, const char *name)
{
    if (d->n_nodes == 0)
        return true;
    for (int i = 0; i < d->n_nodes; i++)
        if (strcmp(d->nodes[i], name) == 0)
            return true;
    return false;
}

/* Position in the service's `nodes` list; an unlisted node ranks after every listed one. */
static int rank_of(const us_service_def *d, const char *name)
{
    for (int i = 0; i < d->n_nodes; i++)
        if (strcmp(d->nodes[i], name) == 0)
            return i;
    return d->n_nodes;
}

static bool in_list(const char (*list)[US_NAME_MAX], int n, const char *name)
{
    for (int i = 0; i < n; i++)
        if (strcmp(list[i], name) == 0)
            return true;
    return false;
}

static bool banned(const us_decide_input *in, const us_assignment *a, const char *node)
{
    const us_failrec *f = us_assignment_failrec(a, node);
    return f && f->banned_until_ms > in->now_ms;
}

static int restarts_in_window(const us_decide_input *in, int s);

/* A counted failure of node n stands while its ban lasts or, when it brought no ban, while its
 * failure window runs and a restart in place could not bring the node back (the restart budget
 * is used up, or the node refused the role). Once it no longer stands (or `understudy reset`
 * cleared it) the node's FAILED report under the current epoch is history: otherwise a free role
 * could stay free until the failure window ends although the restart budget renewed. */
static bool failure_stands(const us_decide_input *in, int s, int n)
{
    const us_failrec *f = us_assignment_failrec(&in->asg[s], in->nodes[n].name);
    if (!f)
        return false;
    if (f->banned_until_ms > 0)
        return f->banned_until_ms > in->now_ms;
    if (in->now_ms - f->window_ms >= in->defs[s].failure_window_ms)
        return false;
    return obs(in, s, n)->refused || restarts_in_window(in, s) >= in->defs[s].max_restarts;
}

/* Does node n's report rule it out for the current epoch? While someone holds the role, a failed
 * or fenced node is out. Once the role is free, a fenced node is not (the guardian killed all it
 * ran), nor a failed one whose failure no longer stands. */
static bool reported_out(const us_decide_input *in, int s, int n)
{
    const us_inst_obs *r = obs(in, s, n);
    const us_assignment *a = &in->asg[s];
    if (r->epoch != a->epoch)
        return false;
    if (r->state == US_INST_FENCED)
        return a->active[0] != '\0';
    if (r->state != US_INST_FAILED)
        return false;
    return a->active[0] || failure_stands(in, s, n);
}

/* Health speaks for a running instance only; a stopped one reports nothing to judge. */
static bool unhealthy(const us_inst_obs *r)
{
    return r->health == US_HEALTH_UNHEALTHY &&
           (r->state == US_INST_STANDBY || r->state == US_INST_ACTIVE);
}

/* Every condition of eligibility except the lease (R1 included). */
static bool qualified(const us_decide_input *in, int s, int n)
{
    const us_node *node = &in->nodes[n];
    if (node->left || node->leaving || node->drained || in->node_obs[n].state != US_NODE_ALIVE)
        return false;
    if (!listed(&in->defs[s], node->name) || reported_out(in, s, n))
        return false;
    if (banned(in, &in->asg[s], node->name))
        return false;
    return !unhealthy(obs(in, s, n));
}

static bool eligible(const us_decide_input *in, int s, int n)
{
    return in->node_obs[n].lease == US_LEASE_VALID && qualified(in, s, n);
}

/* Eligible but for a lease the new leader cannot judge yet (it will within its takeover wait). */
static bool lease_pending(const us_decide_input *in, int s, int n)
{
    return in->node_obs[n].lease == US_LEASE_UNKNOWN && qualified(in, s, n);
}

/* Why an existing standby must go, or NULL: it stays unless it surely cannot serve, because a
 * brief suspicion or a new leader's lease wait must not churn standbys (a hot standby would be
 * restarted). An unhealthy standby stays too: it is only skipped when choosing the active. */
static const char *standby_drop_cause(const us_decide_input *in, int s, int n)
{
    const us_node *node = &in->nodes[n];
    const us_node_obs *o = &in->node_obs[n];
    if (node->left)
        return "node left";
    if (o->state == US_NODE_DEAD)
        return "node dead";
    if (node->leaving)
        return "node leaving";
    if (node->drained)
        return "node drained";
    if (o->lease == US_LEASE_EXPIRED)
        return "lease expired";
    if (!listed(&in->defs[s], node->name))
        return "not in the service's nodes list";
    if (reported_out(in, s, n))
        return obs(in, s, n)->state == US_INST_FENCED ? "instance fenced" : "instance failed";
    if (banned(in, &in->asg[s], node->name))
        return "banned until its cooldown ends";
    return NULL;
}

/* Why node n cannot get the role back by a restart in place (rec: its failure record, already
 * counting this failure), or NULL. A suspect node or an unknown lease is no reason: the pending
 * restart waits for them (R4), and gives up if the node turns out dead. */
static const char *restart_block(const us_decide_input *in, int s, int n, const us_failrec *rec)
{
    const us_node *node = &in->nodes[n];
    const us_node_obs *o = &in->node_obs[n];
    if (node->left || o->state == US_NODE_LEFT)
        return "node left";
    if (o->state == US_NODE_DEAD)
        return "node dead";
    if (o->lease == US_LEASE_EXPIRED)
        return "lease expired";
    if (node->leaving)
        return "node leaving";
    if (node->drained)
        return "node drained";
    if (!listed(&in->defs[s], node->name))
        return "not in the service's nodes list";
    if (rec && rec->banned_until_ms > in->now_ms)
        return "node banned";
    return NULL;
}

/* Restarts in place counted in the current restart window (0 once that window is over). */
static int restarts_in_window(const us_decide_input *in, int s)
{
    const us_assignment *a = &in->asg[s];
    if (in->now_ms - a->restart_window_ms >= in->defs[s].restart_window_ms)
        return 0;
    return a->restarts;
}

/* restart_block() plus the restart budget; "" when a restart in place is possible. */
static void restart_verdict(const us_decide_input *in, int s, int h, const us_failrec *rec,
                            char *buf, size_t len)
{
    const us_service_def *d = &in->defs[s];
    const char *block = restart_block(in, s, h, rec);
    int used = restarts_in_window(in, s);
    if (block)
        snprintf(buf, len, "%s", block);
    else if (obs(in, s, h)->refused)
        snprintf(buf, len, "%s refused the role", in->nodes[h].name);
    else if (used >= d->max_restarts)
        snprintf(buf, len, "%d/%d restarts within %s used", used, d->max_restarts,
                 fmt_dur(d->restart_window_ms).s);
    else
        buf[0] = '\0';
}

/* R3a: count a failure of `node` in a's records and return its record. */
static us_failrec *count_failure(const us_decide_input *in, int s, us_assignment *a,
                                 const char *node)
{
    const us_service_def *d = &in->defs[s];
    int64_t now = in->now_ms;
    us_failrec *f = NULL;
    for (int i = 0; i < a->n_fail && i < US_MAX_NODES; i++)
        if (strcmp(a->fail[i].node, node) == 0)
            f = &a->fail[i];
    if (!f) {
        if (a->n_fail < US_MAX_NODES) {
            f = &a->fail[a->n_fail++];
        } else {
            /* Full only with records of removed nodes: reuse the oldest, unbanned if possible. */
            f = &a->fail[0];
            for (int i = 1; i < US_MAX_NODES; i++) {
                const us_failrec *g = &a->fail[i];
                bool fb = f->banned_until_ms > now, gb = g->banned_until_ms > now;
                if ((fb && !gb) || (fb == gb && g->last_ms < f->last_ms))
                    f = &a->fail[i];
            }
        }
        memset(f, 0, sizeof *f);
        us_strlcpy(f->node, node, sizeof f->node);
    }
    /* A served ban starts a fresh count, or the next failure would ban the node at once. */
    bool ban_served = f->banned_until_ms > 0 && f->banned_until_ms <= now;
    if (f->failures <= 0 || now - f->window_ms >= d->failure_window_ms || ban_served) {
        f->window_ms = now;
        f->failures = 1;
        f->banned_until_ms = 0;
    } else {
        f->failures++;
    }
    f->last_ms = now;
    if (d->failure_threshold > 0 && f->failures >= d->failure_threshold)
        f->banned_until_ms = now + d->failure_cooldown_ms;
    return f;
}

/* min(max, min << (restarts - 1)) without overflow. */
static int64_t backoff_ms(const us_service_def *d, int restarts)
{
    int64_t max = d->restart_backoff_max_ms > 0 ? d->restart_backoff_max_ms : 0;
    int64_t b = d->restart_backoff_min_ms > 0 ? d->restart_backoff_min_ms : 0;
    for (int k = 1; k < restarts && b > 0 && b < max; k++)
        b *= 2;
    return b < max ? b : max;
}

/* End of the failover guard (min_failover_interval after the last failover), 0 if none runs. */
static int64_t guard_end(const us_decide_input *in, int s)
{
    const us_assignment *a = &in->asg[s];
    int64_t iv = in->defs[s].min_failover_interval_ms;
    if (iv <= 0 || a->last_failover_ms <= 0)
        return 0;
    int64_t end = a->last_failover_ms + iv;
    return end > in->now_ms ? end : 0;
}

/* Did a holder fail after the last failover? Then the guard also holds back a free role. */
static bool failed_since_failover(const us_assignment *a)
{
    for (int i = 0; i < a->n_fail && i < US_MAX_NODES; i++)
        if (a->fail[i].last_ms > a->last_failover_ms)
            return true;
    return false;
}

/* Why the holder no longer acts (US_RELEASE_NONE: it may still be acting). */
static us_release_kind release_of(const us_decide_input *in, int s, int h, char *why, size_t len)
{
    const us_assignment *a = &in->asg[s];
    const us_inst_obs *r = obs(in, s, h);
    const us_node *node = &in->nodes[h];
    const us_node_obs *o = &in->node_obs[h];
    if (r->epoch == a->epoch) {
        switch (r->state) {
        case US_INST_DEMOTED:
            snprintf(why, len, "%s confirmed demotion", node->name);
            return a->demoting ? US_RELEASE_SWITCHOVER : US_RELEASE_DEMOTED;
        case US_INST_FAILED:
            /* The cause is cut so the decision that follows it stays readable. */
            if (r->cause[0])
                snprintf(why, len, "instance on %s failed: %.120s", node->name, r->cause);
            else
                snprintf(why, len, "instance on %s failed (exit status %d)", node->name,
                         r->exit_status);
            /* Stopped because we asked (recover): the failure is its failing health checks. */
            return a->recover ? US_RELEASE_UNHEALTHY : US_RELEASE_FAILED;
        case US_INST_FENCED:
            snprintf(why, len, "guardian on %s fenced the instance", node->name);
            return US_RELEASE_FENCED;
        default:
            break;
        }
    }
    if (o->lease == US_LEASE_EXPIRED) {
        snprintf(why, len, "lease of %s expired (last seen %lld ms ago)", node->name,
                 (long long)o->last_seen_ms);
        return US_RELEASE_LEASE;
    }
    if (node->incarnation != 0 && a->active_inc != 0 && node->incarnation != a->active_inc) {
        snprintf(why, len, "agent on %s restarted", node->name);
        return US_RELEASE_AGENT;
    }
    return US_RELEASE_NONE;
}

/* Whether choose_active waits for node n: eligible but for a lease not known yet. The holder
 * whose role is being released (`released`) is never waited for: while it holds the role, a
 * voter that revoked it keeps its lease unknown, and that revocation lifts only once the role is
 * released, which waiting would never commit. It is skipped like any node whose lease is not
 * known to be valid. */
static bool waits_for(const us_decide_input *in, int s, int n, int released)
{
    return n >= 0 && n != released && lease_pending(in, s, n);
}

/* Whether node n's standby instance followed the service's current active (R11): the service has
 * no `follow`, or the node's follow hook succeeded for the assignment's epoch, the one of the
 * active that is (or was last) in place. */
static bool followed(const us_decide_input *in, int s, int n)
{
    return !in->defs[s].follow[0] || obs(in, s, n)->followed == in->asg[s].epoch;
}

/* R12: what node n's instance reported as its position (a failed or stopped one: the last one
 * it had); -1 when unknown, and always for a node with no instance there (a node that reports
 * nothing has a zeroed report). */
static int64_t position_of(const us_decide_input *in, int s, int n)
{
    const us_inst_obs *r = obs(in, s, n);
    return r->state != US_INST_NONE ? r->position : -1;
}

/* R12: the position the new active must come close to: the one the holder being released
 * (`released`) reported last, else the one recorded when the role was released. false: none. */
static bool lost_position(const us_decide_input *in, int s, int released, int64_t *out)
{
    if (!in->defs[s].position[0])
        return false;
    const us_assignment *a = &in->asg[s];
    int64_t rec = a->has_lost_position ? a->lost_position : -1;
    if (released >= 0) { /* its last report, or what the state recorded, whichever is greater */
        int64_t p = position_of(in, s, released);
        *out = p > rec ? p : rec;
        return *out >= 0;
    }
    *out = rec;
    return rec >= 0;
}

/* R12: with max_lag, record the holder's position in the state as it grows (by half of max_lag
 * or more, at most once a second), so that a leader elected when the holder is lost knows how
 * far it had come even without its reports. true if recorded. */
static bool record_position(const us_decide_input *in, int s, us_assignment *next)
{
    const us_service_def *d = &in->defs[s];
    const us_assignment *cur = &in->asg[s];
    int h = cur->active[0] ? find_node(in, cur->active) : -1;
    if (d->max_lag < 0 || !d->position[0] || h < 0 || strcmp(next->active, cur->active) != 0 ||
        next->epoch != cur->epoch)
        return false;
    const us_inst_obs *r = obs(in, s, h);
    int64_t p = r->state == US_INST_ACTIVE && r->epoch == cur->epoch ? r->position : -1;
    int64_t step = d->max_lag / 2 > 1 ? d->max_lag / 2 : 1;
    if (p < 0 || (cur->has_lost_position && p - cur->lost_position < step) ||
        in->now_ms - cur->position_ms < 1000)
        return false;
    next->has_lost_position = true;
    next->lost_position = p;
    next->position_ms = in->now_ms;
    return true;
}

/* R12: node n is close enough to the lost active's position (max_lag), or there is no limit. */
static bool within_lag(const us_decide_input *in, int s, int released, int n)
{
    const us_service_def *d = &in->defs[s];
    int64_t ref;
    if (d->max_lag < 0 || !lost_position(in, s, released, &ref))
        return true;
    int64_t p = position_of(in, s, n);
    return p >= 0 && (p >= ref || ref - p <= d->max_lag);
}

/* R12: how long after a release the leader waits for the standbys to read their positions
 * afresh: two position intervals and a second (a standby that cannot answer in that time is
 * judged by its last report). */
static int64_t fresh_bound_ms(const us_service_def *d)
{
    return 2 * (d->n_checks > 0 ? d->check_interval_ms : 1000) + 1000;
}

/* R12: may the next active be chosen by the standbys' positions now? Not in the round that
 * releases the holder (`released` >= 0): the release commits first, and every standby reads
 * its position again when it applies it. Then not until every qualified standby reported a
 * position read at the current assignment (position_gen), or the bound ran out. */
static bool positions_settled(const us_decide_input *in, int s, int released)
{
    const us_service_def *d = &in->defs[s];
    const us_assignment *a = &in->asg[s];
    if (!d->position[0] || a->epoch == 0)
        return true;
    if (released >= 0)
        return false;
    if (a->free_since_ms == 0 || in->now_ms >= a->free_since_ms + fresh_bound_ms(d))
        return true;
    for (int i = 0; i < a->n_standbys; i++) {
        int n = find_node(in, a->standbys[i]);
        if (n >= 0 && qualified(in, s, n) && obs(in, s, n)->position_gen < a->gen)
            return false;
    }
    return true;
}

/* R13: node n may be promoted as far as synchronous replication goes: the service has none, it
 * never had an active, an operator waived the set (reset, switchover --force), or n is in the set
 * in force; or the set is empty and the holder demoted by plan (`planned`: a switchover or a
 * drain, whose demote hook handed everything over first). A planned move goes to a member when
 * there is one: a demote hook can hand over only to the standbys connected at that moment. */
static bool sync_ok(const us_decide_input *in, int s, int n, bool planned)
{
    const us_assignment *a = &in->asg[s];
    return in->defs[s].synchronous == 0 || a->epoch == 0 || a->sync_waived ||
           (planned && a->n_sync == 0) ||
           in_list((const char(*)[US_NAME_MAX])a->sync, a->n_sync, in->nodes[n].name);
}

/* R12 and R13 together: what keeps node n from the role whatever else holds. */
static bool may_take(const us_decide_input *in, int s, int released, int n, bool planned)
{
    return within_lag(in, s, released, n) && sync_ok(in, s, n, planned);
}

/* R12: after "no eligible node for the active role", the standbys that only max_lag kept out. */
static void lag_note(const us_decide_input *in, int s, int released, char *why, size_t len)
{
    const us_service_def *d = &in->defs[s];
    const us_assignment *a = &in->asg[s];
    int64_t ref;
    if (d->max_lag < 0 || !lost_position(in, s, released, &ref))
        return;
    int kept = 0;
    for (int i = 0; i < a->n_standbys; i++) {
        int n = find_node(in, a->standbys[i]);
        if (n < 0 || n == released || within_lag(in, s, released, n) || !qualified(in, s, n))
            continue;
        int64_t p = position_of(in, s, n);
        if (p >= 0)
            append(why, len, "%s %s at position %lld",
                   kept ? "," : "; not promoted:", a->standbys[i], (long long)p);
        else
            append(why, len, "%s %s at an unknown position",
                   kept ? "," : "; not promoted:", a->standbys[i]);
        kept++;
    }
    if (kept)
        append(why, len,
               " (more than max_lag %lld behind the lost active's %lld; " US_LOSS_NOTE ")",
               (long long)d->max_lag, (long long)ref, d->name);
}

/* R13: after "no eligible node for the active role", when the synchronous set kept others out. */
static void sync_note(const us_decide_input *in, int s, char *why, size_t len)
{
    const us_assignment *a = &in->asg[s];
    if (in->defs[s].synchronous == 0 || a->epoch == 0 || a->sync_waived)
        return;
    if (a->n_sync == 0) {
        append(why, len,
               "; the synchronous set is empty: no standby holds every acknowledged "
               "write (" US_LOSS_NOTE ")",
               a->service);
        return;
    }
    append(why, len, "; only the synchronous set may be promoted:");
    for (int i = 0; i < a->n_sync; i++)
        append(why, len, "%s %s", i ? "," : "", a->sync[i]);
    append(why, len, " (" US_LOSS_NOTE ")", a->service);
}

/* The order in which the standbys are tried (into out[], their indexes in the assignment): R11
 * those that followed the active first; R12 among those, with `position`, the highest position
 * first (unknown last); then the standbys' own order. */
static int standby_order(const us_decide_input *in, int s, int *out)
{
    const us_assignment *a = &in->asg[s];
    bool by_pos = in->defs[s].position[0] != 0;
    int64_t key[US_MAX_NODES][2];
    int n = 0;
    for (int i = 0; i < a->n_standbys && i < US_MAX_NODES; i++) {
        int node = find_node(in, a->standbys[i]);
        key[i][0] = node >= 0 && followed(in, s, node);
        key[i][1] = node >= 0 && by_pos ? position_of(in, s, node) : -1;
        int j = n++;
        for (; j > 0; j--) { /* insertion: stable, so equal keys keep the standbys' order */
            int k = out[j - 1];
            if (key[k][0] > key[i][0] || (key[k][0] == key[i][0] && key[k][1] >= key[i][1]))
                break;
            out[j] = k;
        }
        out[j] = i;
    }
    return n;
}

/* Pick the new active: target, else the first eligible standby in standby_order, else first
 * eligible by preference. A better-placed node whose lease is still unknown is waited for
 * (US_WAIT), not skipped, unless it is the holder being released (`released`, -1 for none). A
 * node further than max_lag behind the lost active's position is neither chosen nor waited for
 * (R12). */
static int choose_active(const us_decide_input *in, int s, int released, bool planned,
                         const char **how)
{
    const us_assignment *a = &in->asg[s];
    if (a->target[0]) {
        int t = find_node(in, a->target);
        if (t < 0 || may_take(in, s, released, t, planned)) {
            if (waits_for(in, s, t, released))
                return US_WAIT;
            if (t >= 0 && eligible(in, s, t)) {
                *how = "requested target";
                return t;
            }
        }
    }
    /* R11: a standby that did not follow the active may lack its latest data: only if no
     * standby that did is eligible (or waited for). R12: the freshest first. */
    int order[US_MAX_NODES];
    int n_order = standby_order(in, s, order);
    for (int i = 0; i < n_order; i++) {
        int n = find_node(in, a->standbys[order[i]]);
        if (n >= 0 && !may_take(in, s, released, n, planned))
            continue;
        if (waits_for(in, s, n, released))
            return US_WAIT;
        if (n >= 0 && eligible(in, s, n)) {
            *how = followed(in, s, n) ? "standby"
                                      : "standby (none that followed the active is eligible)";
            return n;
        }
    }
    const us_service_def *d = &in->defs[s];
    for (int i = 0; i < (d->n_nodes ? d->n_nodes : in->n_nodes); i++) {
        int n = d->n_nodes ? find_node(in, d->nodes[i]) : i;
        if (n < 0 || !may_take(in, s, released, n, planned))
            continue;
        if (waits_for(in, s, n, released))
            return US_WAIT;
        if (eligible(in, s, n)) {
            *how = "first eligible in preference order";
            return n;
        }
    }
    return -1;
}

/* R6: the most preferred node ranking before `active` in the nodes list that could take the
 * role back: eligible, and no failure of it in its failure window (a node that just failed is
 * not given the role back by preference alone). -1 if none. */
static int failback_node(const us_decide_input *in, int s, const char *active)
{
    const us_service_def *d = &in->defs[s];
    if (!d->failback || d->n_nodes == 0 || !active[0])
        return -1;
    for (int i = 0; i < d->n_nodes; i++) {
        if (strcmp(d->nodes[i], active) == 0)
            return -1;
        int n = find_node(in, d->nodes[i]);
        if (n < 0 || !eligible(in, s, n))
            continue;
        const us_failrec *f = us_assignment_failrec(&in->asg[s], d->nodes[i]);
        if (f && f->failures > 0 && in->now_ms - f->last_ms < d->failure_window_ms)
            continue;
        return n;
    }
    return -1;
}

/* A standby ready to take over by switchover: its standby instance is reported under the
 * current epoch, followed the active (R11) and, when hot with checks, healthy. */
static bool standby_ready(const us_decide_input *in, int s, int n)
{
    const us_inst_obs *r = obs(in, s, n);
    const us_service_def *d = &in->defs[s];
    if (r->state != US_INST_STANDBY || r->epoch != in->asg[s].epoch || !followed(in, s, n) ||
        !sync_ok(in, s, n, false))
        return false;
    if (d->standby == US_STANDBY_HOT && d->n_checks > 0)
        return r->health == US_HEALTH_HEALTHY;
    return true;
}

/* Give the active role to node c: a new epoch, and every pending step of the old one clears. */
static void give_role(const us_decide_input *in, int s, us_assignment *next, int c)
{
    us_strlcpy(next->active, in->nodes[c].name, sizeof next->active);
    next->active_inc = in->nodes[c].incarnation;
    next->epoch = in->asg[s].epoch + 1;
    next->demoting = false;
    next->target[0] = '\0';
    next->recover = false;
    next->restart_node[0] = '\0';
    next->restart_at_ms = 0;
    next->has_lost_position = false;
    next->lost_position = 0;
    next->position_ms = 0;
    /* R13: the new active waits for nobody yet; nobody is promotable until its sync hook ran. */
    if (in->defs[s].synchronous > 0 || next->sync_gen) {
        next->n_sync = next->n_sync_want = 0;
        next->sync_gen++;
    }
    next->sync_waived = false;
    next->free_since_ms = 0;
}

/* R7: the role went to another node than the one that held it (or was to get it back). The
 * restart budget is about one holder, so it starts afresh; unless the move was a planned
 * switchover or the initial placement it is a failover, which starts the failover guard. */
static void note_move(const us_decide_input *in, int s, us_assignment *next, bool switchover)
{
    const us_assignment *cur = &in->asg[s];
    const char *prev = cur->active[0] ? cur->active : cur->restart_node;
    if (strcmp(prev, next->active) == 0)
        return;
    next->restarts = 0;
    next->restart_window_ms = 0;
    if (!switchover && cur->epoch > 0)
        next->last_failover_ms = in->now_ms;
}

/* R3e: the role stays free until the backoff is over, then goes back to h (R4). */
static void restart_in_place(const us_decide_input *in, int s, int h, us_assignment *next,
                             const char *because, char *why, size_t len)
{
    const us_service_def *d = &in->defs[s];
    int64_t now = in->now_ms;
    if (now - in->asg[s].restart_window_ms >= d->restart_window_ms) {
        next->restarts = 0;
        next->restart_window_ms = now;
    }
    next->restarts++;
    int64_t b = backoff_ms(d, next->restarts);
    us_strlcpy(next->restart_node, in->nodes[h].name, sizeof next->restart_node);
    next->restart_at_ms = now + b;
    next->active[0] = '\0';
    next->active_inc = 0;
    next->demoting = false;
    next->target[0] = '\0';
    next->recover = false;
    append(why, len, "; %s%srestart %d/%d on %s in %s", because, because[0] ? ": " : "",
           next->restarts, d->max_restarts, in->nodes[h].name, fmt_dur(b).s);
}

static void guard_text(const us_decide_input *in, int s, char *buf, size_t len)
{
    snprintf(buf, len, "last failover %lld ms ago < min_failover_interval %s",
             (long long)(in->now_ms - in->asg[s].last_failover_ms),
             fmt_dur(in->defs[s].min_failover_interval_ms).s);
}

/* R3: holder h reported its instance failed under the current epoch; `why` holds that release
 * and next->active is already empty. Returns false to decide nothing this round. */
static bool after_failure(const us_decide_input *in, int s, int h, us_assignment *next, char *why,
                          size_t len)
{
    const us_service_def *d = &in->defs[s];
    const us_assignment *cur = &in->asg[s];
    const char *hn = in->nodes[h].name;
    int64_t now = in->now_ms;
    const us_failrec *f = count_failure(in, s, next, hn);
    if (f->banned_until_ms > now)
        append(why, len, "; %s failed %s %d times within %s: not used for it for %s", hn, d->name,
               f->failures, fmt_dur(d->failure_window_ms).s, fmt_dur(d->failure_cooldown_ms).s);
    char block[96];
    restart_verdict(in, s, h, f, block, sizeof block);
    if (f->banned_until_ms <= now && d->max_restarts > 0 &&
        restarts_in_window(in, s) >= d->max_restarts && !restart_block(in, s, h, f)) {
        /* Restarts used up and it failed again: the node is marked failed for the service. */
        for (int i = 0; i < next->n_fail; i++)
            if (strcmp(next->fail[i].node, hn) == 0)
                next->fail[i].banned_until_ms = now + d->failure_cooldown_ms;
        append(why, len, "; %s marked failed for %s (%s): not used for it for %s", hn, d->name,
               block, fmt_dur(d->failure_cooldown_ms).s);
    }
    bool can_restart = !block[0];
    const char *how = "";
    int c = choose_active(in, s, h, false, &how);
    if (c >= 0 && !positions_settled(in, s, h))
        c = US_LATER; /* R12; with no candidate at all, a restart in place may still help */
    /* A requested switchover is a request to move: neither the policy nor the guard keeps the
     * role on the node it was to leave. */
    bool policy_restart = d->on_failure == US_ON_FAILURE_RESTART && !cur->demoting;
    int64_t ge = cur->demoting ? 0 : guard_end(in, s);
    char gtext[96];
    guard_text(in, s, gtext, sizeof gtext);

    if (policy_restart && can_restart) {
        restart_in_place(in, s, h, next, "", why, len);
        return true;
    }
    if (c == US_LATER && !ge) { /* R12: the standbys read their positions first */
        next->demoting = false;
        next->target[0] = '\0';
        append(why, len, "; reading the standbys' positions");
        return true;
    }
    /* A better-placed candidate whose lease is not yet known is waited for only when its answer
     * can change the outcome: while the guard runs no failover happens either way. */
    if (c == US_WAIT && !ge)
        return false;
    if (c >= 0 && !ge) {
        if (policy_restart)
            append(why, len, "; no restart in place (%s)", block);
        give_role(in, s, next, c);
        note_move(in, s, next, false);
        append(why, len, "; %s promoted (%s)", next->active, how);
        return true;
    }
    if (can_restart) {
        restart_in_place(in, s, h, next, ge ? gtext : "no eligible node to fail over to", why, len);
        return true;
    }
    next->demoting = false;
    next->target[0] = '\0';
    if (ge && (c >= 0 || c == US_WAIT || c == US_LATER))
        append(why, len, "; no restart in place (%s); %s: no failover before %lld (in %lld ms)",
               block, gtext, (long long)ge, (long long)(ge - now));
    else {
        append(why, len, "; no restart in place (%s); no eligible node for the active role", block);
        lag_note(in, s, h, why, len);
        sync_note(in, s, why, len);
    }
    return true;
}

/* R5: would stopping an unhealthy holder h bring a working instance, by a restart in place
 * (counting this failure) or by a failover that may happen now? */
static bool stopping_helps(const us_decide_input *in, int s, int h)
{
    us_assignment sim = in->asg[s];
    const us_failrec *f = count_failure(in, s, &sim, in->nodes[h].name);
    char block[96];
    restart_verdict(in, s, h, f, block, sizeof block);
    if (!block[0])
        return true;
    const char *how = "";
    int c = choose_active(in, s, h, false, &how);
    return c >= 0 && c != h && !guard_end(in, s);
}

typedef enum { PENDING_WAIT, PENDING_GIVEN, PENDING_DROPPED } pending_result;

/* R4: no holder and a restart in place pending. */
static pending_result pending_restart(const us_decide_input *in, int s, us_assignment *next,
                                      char *why, size_t len)
{
    const us_assignment *cur = &in->asg[s];
    const us_service_def *d = &in->defs[s];
    int r = find_node(in, cur->restart_node);
    const char *block =
        r < 0 ? "node unknown"
              : restart_block(in, s, r, us_assignment_failrec(cur, cur->restart_node));
    if (block) {
        append(why, len, "restart on %s abandoned (%s)", cur->restart_node, block);
        next->restart_node[0] = '\0';
        next->restart_at_ms = 0;
        return PENDING_DROPPED;
    }
    if (in->now_ms < cur->restart_at_ms)
        return PENDING_WAIT;
    if (in->node_obs[r].state != US_NODE_ALIVE || in->node_obs[r].lease != US_LEASE_VALID)
        return PENDING_WAIT; /* suspect, or a new leader's lease wait: it will be judged soon */
    give_role(in, s, next, r);
    append(why, len, "restart %d/%d on %s (backoff %s over)", cur->restarts, d->max_restarts,
           next->active, fmt_dur(backoff_ms(d, cur->restarts)).s);
    return PENDING_GIVEN;
}

/* Choose a holder for a free role. `guarded`: the role was already free at input, so a failure
 * since the last failover keeps it free until the failover guard ends. `released`: the holder
 * released this round (-1 for none). Returns false to decide nothing this round. */
static bool pick_active(const us_decide_input *in, int s, int released, us_assignment *next,
                        bool switchover, bool guarded, char *why, size_t len)
{
    const us_assignment *cur = &in->asg[s];
    const char *how = "";
    if (released < 0 && !positions_settled(in, s, released))
        return false; /* R12: decide again once the standbys read their positions afresh */
    int c = choose_active(in, s, released, switchover, &how);
    if (c == US_WAIT)
        return false; /* decide again once the new leader knows that node's lease */
    if (c >= 0 && !positions_settled(in, s, released)) {
        append(why, len, "%sreading the standbys' positions", why[0] ? "; " : "");
        return true; /* R12: the release commits first */
    }
    /* R12: the positions were read afresh after a release: this decision ends the wait, and says
     * why nobody got the role if nobody did. */
    bool read = released < 0 && cur->free_since_ms > 0;
    if (read)
        next->free_since_ms = 0;
    int64_t ge = guarded && failed_since_failover(cur) ? guard_end(in, s) : 0;
    if (c >= 0 && ge) {
        char gtext[96];
        guard_text(in, s, gtext, sizeof gtext);
        append(why, len, "%s%s: no failover before %lld (in %lld ms)", why[0] ? "; " : "", gtext,
               (long long)ge, (long long)(ge - in->now_ms));
        return true;
    }
    if (c >= 0) {
        give_role(in, s, next, c);
        note_move(in, s, next, switchover);
        if (why[0])
            append(why, len, "; %s promoted (%s)", next->active, how);
        else if (cur->epoch == 0)
            append(why, len, "initial placement on %s (%s)", next->active, how);
        else
            append(why, len, "%s promoted (%s)", next->active, how);
    } else if (why[0] || cur->demoting || read) {
        next->demoting = false;
        next->target[0] = '\0';
        append(why, len, "%sno eligible node for the active role", why[0] ? "; " : "");
        lag_note(in, s, released, why, len);
        sync_note(in, s, why, len);
    }
    return true;
}

/* Recompute the standby list of `next`; describe drops/additions in `why`. */
static void place_standbys(const us_decide_input *in, int s, us_assignment *next, char *why,
                           size_t len)
{
    const us_service_def *d = &in->defs[s];
    char keep[US_MAX_NODES][US_NAME_MAX] = {{0}}; /* whole entries are copied out */
    int n_keep = 0;
    for (int i = 0; i < next->n_standbys; i++) {
        const char *name = next->standbys[i];
        int n = find_node(in, name);
        if (strcmp(name, next->active) == 0)
            continue;
        const char *cause = n < 0 ? "node left" : standby_drop_cause(in, s, n);
        if (cause) {
            append(why, len, "%sstandby %s dropped (%s)", why[0] ? "; " : "", name, cause);
            continue;
        }
        if (n_keep < d->standbys)
            us_strlcpy(keep[n_keep++], name, US_NAME_MAX);
    }
    for (int i = 0; i < (d->n_nodes ? d->n_nodes : in->n_nodes) && n_keep < d->standbys; i++) {
        int n = d->n_nodes ? find_node(in, d->nodes[i]) : i;
        if (n < 0)
            continue;
        const char *name = in->nodes[n].name;
        if (strcmp(name, next->active) == 0 || strcmp(name, next->restart_node) == 0 ||
            in_list((const char(*)[US_NAME_MAX])keep, n_keep, name) || !eligible(in, s, n))
            continue;
        us_strlcpy(keep[n_keep++], name, US_NAME_MAX);
        if (!in_list((const char(*)[US_NAME_MAX])next->standbys, next->n_standbys, name))
            append(why, len, "%sstandby %s added", why[0] ? "; " : "", name);
    }
    /* R6: with every slot taken, the preferred node takes the slot of the least preferred
     * standby ranking after it, so that the failback can follow once it is ready. */
    int p = n_keep > 0 && n_keep == d->standbys && !next->demoting && !next->recover
                ? failback_node(in, s, next->active)
                : -1;
    if (p >= 0 && !in_list((const char(*)[US_NAME_MAX])keep, n_keep, in->nodes[p].name)) {
        int victim = -1, rp = rank_of(d, in->nodes[p].name);
        for (int k = 0; k < n_keep; k++)
            if (rank_of(d, keep[k]) > rp &&
                (victim < 0 || rank_of(d, keep[k]) >= rank_of(d, keep[victim])))
                victim = k;
        if (victim >= 0) {
            append(why, len, "%sstandby %s replaced by preferred %s (failback)", why[0] ? "; " : "",
                   keep[victim], in->nodes[p].name);
            us_strlcpy(keep[victim], in->nodes[p].name, US_NAME_MAX);
        }
    }
    next->n_standbys = n_keep;
    memcpy(next->standbys, keep, sizeof keep[0] * (size_t)n_keep);
}

/* R13: a standby that may be in the synchronous set: listed, its node not dead or gone, its
 * standby instance reported under the current epoch, not unhealthy, and following the active. */
static bool sync_ready(const us_decide_input *in, int s, const us_assignment *next,
                       const char *name)
{
    int n = find_node(in, name);
    if (n < 0 || !in_list((const char(*)[US_NAME_MAX])next->standbys, next->n_standbys, name))
        return false;
    const us_inst_obs *r = obs(in, s, n);
    return !in->nodes[n].left && in->node_obs[n].state != US_NODE_DEAD &&
           r->state == US_INST_STANDBY && r->epoch == next->epoch &&
           r->health != US_HEALTH_UNHEALTHY && followed(in, s, n);
}

static bool same_set(const char (*a)[US_NAME_MAX], int na, const char (*b)[US_NAME_MAX], int nb)
{
    if (na != nb)
        return false;
    for (int i = 0; i < na; i++)
        if (!in_list(b, nb, a[i]))
            return false;
    return true;
}

static void set_text(char *buf, size_t len, const char (*set)[US_NAME_MAX], int n)
{
    size_t used = 0;
    buf[0] = '\0';
    for (int i = 0; i < n && used < len; i++)
        used += (size_t)snprintf(buf + used, len - used, "%s%s", i ? " " : "", set[i]);
    if (n == 0)
        snprintf(buf, len, "none");
}

/* R13: keep the synchronous set of a service whose holder stays: the members of sync_want that
 * are still ready, then other ready standbys (the freshest first, then the standbys' order) up
 * to `synchronous`. A new want shrinks `sync` to its intersection with the want in the same
 * command (a leaving member is not promotable from then on); once the active reports its sync
 * hook done for sync_gen, `sync` grows to the want. While the role is free nothing changes: the
 * set in force when the active was lost decides who may take it. */
static void update_sync(const us_decide_input *in, int s, us_assignment *next, char *why,
                        size_t len)
{
    const us_service_def *d = &in->defs[s];
    const us_assignment *cur = &in->asg[s];
    if (d->synchronous == 0) {
        next->n_sync = next->n_sync_want = 0; /* turned off: nothing to keep */
        return;
    }
    int h = next->active[0] ? find_node(in, next->active) : -1;
    if (h < 0 || strcmp(next->active, cur->active) != 0 || next->epoch != cur->epoch)
        return;
    char want[US_MAX_NODES][US_NAME_MAX];
    int n_want = 0;
    for (int i = 0; i < next->n_sync_want && n_want < d->synchronous; i++)
        if (sync_ready(in, s, next, next->sync_want[i]))
            us_strlcpy(want[n_want++], next->sync_want[i], US_NAME_MAX);
    /* standby_order ranks the current standbys (the input's); only those still listed count. */
    int order[US_MAX_NODES];
    int n_order = standby_order(in, s, order);
    for (int i = 0; i < n_order && n_want < d->synchronous; i++) {
        const char *name = cur->standbys[order[i]];
        if (sync_ready(in, s, next, name) &&
            !in_list((const char(*)[US_NAME_MAX])want, n_want, name))
            us_strlcpy(want[n_want++], name, US_NAME_MAX);
    }
    char a[US_REASON_MAX / 4], b[US_REASON_MAX / 4];
    if (!same_set((const char(*)[US_NAME_MAX])want, n_want,
                  (const char(*)[US_NAME_MAX])next->sync_want, next->n_sync_want)) {
        int k = 0;
        for (int i = 0; i < next->n_sync; i++)
            if (in_list((const char(*)[US_NAME_MAX])want, n_want, next->sync[i]))
                us_strlcpy(next->sync[k++], next->sync[i], US_NAME_MAX);
        next->n_sync = k;
        set_text(a, sizeof a, (const char(*)[US_NAME_MAX])next->sync_want, next->n_sync_want);
        set_text(b, sizeof b, (const char(*)[US_NAME_MAX])want, n_want);
        memcpy(next->sync_want, want, sizeof want[0] * (size_t)n_want);
        next->n_sync_want = n_want;
        next->sync_gen++;
        append(why, len, "%ssynchronous standbys %s -> %s (%s to confirm)", why[0] ? "; " : "", a,
               b, next->active);
        return;
    }
    if (obs(in, s, h)->sync_applied == next->sync_gen &&
        !same_set((const char(*)[US_NAME_MAX])next->sync, next->n_sync,
                  (const char(*)[US_NAME_MAX])next->sync_want, next->n_sync_want)) {
        memcpy(next->sync, next->sync_want, sizeof next->sync[0] * (size_t)next->n_sync_want);
        next->n_sync = next->n_sync_want;
        set_text(a, sizeof a, (const char(*)[US_NAME_MAX])next->sync, next->n_sync);
        append(why, len, "%ssynchronous standbys %s confirmed by %s", why[0] ? "; " : "", a,
               next->active);
    }
}

static bool same_failrec(const us_failrec *a, const us_failrec *b)
{
    return strcmp(a->node, b->node) == 0 && a->failures == b->failures &&
           a->window_ms == b->window_ms && a->last_ms == b->last_ms &&
           a->banned_until_ms == b->banned_until_ms;
}

static bool same_assignment(const us_assignment *a, const us_assignment *b)
{
    if (strcmp(a->active, b->active) != 0 || a->active_inc != b->active_inc ||
        a->epoch != b->epoch || a->demoting != b->demoting || strcmp(a->target, b->target) != 0 ||
        a->n_standbys != b->n_standbys || a->recover != b->recover ||
        strcmp(a->restart_node, b->restart_node) != 0 || a->restart_at_ms != b->restart_at_ms ||
        a->restarts != b->restarts || a->restart_window_ms != b->restart_window_ms ||
        a->last_failover_ms != b->last_failover_ms || a->n_fail != b->n_fail ||
        a->has_lost_position != b->has_lost_position || a->lost_position != b->lost_position ||
        a->sync_gen != b->sync_gen || a->sync_waived != b->sync_waived ||
        a->free_since_ms != b->free_since_ms || a->position_ms != b->position_ms ||
        !same_set((const char(*)[US_NAME_MAX])a->sync, a->n_sync,
                  (const char(*)[US_NAME_MAX])b->sync, b->n_sync))
        return false;
    for (int i = 0; i < a->n_standbys; i++)
        if (strcmp(a->standbys[i], b->standbys[i]) != 0)
            return false;
    for (int i = 0; i < a->n_fail && i < US_MAX_NODES; i++)
        if (!same_failrec(&a->fail[i], &b->fail[i]))
            return false;
    return true;
}

/* The holder reports its instance active but unhealthy, and nothing else is under way. */
static bool holder_unhealthy(const us_decide_input *in, int s, int h)
{
    const us_assignment *a = &in->asg[s];
    const us_inst_obs *r = obs(in, s, h);
    return r->state == US_INST_ACTIVE && r->epoch == a->epoch && r->health == US_HEALTH_UNHEALTHY &&
           !a->demoting && !a->recover;
}

/* R9: the holder keeps the role (same node, same epoch) and its lease is valid by a majority of
 * grants, but a voter revoked it: renew the role, so that the revocation ends and the holder
 * again has every voter to renew with (lease.h). Not a transition. */
static bool renews(const us_decide_input *in, int s, const us_assignment *next)
{
    const us_assignment *cur = &in->asg[s];
    int h = cur->active[0] ? find_node(in, cur->active) : -1;
    return h >= 0 && strcmp(next->active, cur->active) == 0 && next->epoch == cur->epoch &&
           in->node_obs[h].lease == US_LEASE_VALID && in->node_obs[h].revoked;
}

/* Decide for service s (not paused); true with *next filled when its assignment must change. */
static bool decide_service(const us_decide_input *in, int s, us_assignment *next)
{
    const us_assignment *cur = &in->asg[s];
    const us_service_def *d = &in->defs[s];
    char why[US_REASON_MAX] = "";
    bool choose = false, switchover = false, guarded = false;
    int gone = -1; /* the holder released this round */
    *next = *cur;
    next->release = US_RELEASE_NONE;

    if (cur->active[0]) {
        int h = find_node(in, cur->active);
        char released[US_REASON_MAX];
        us_release_kind k =
            h >= 0 ? release_of(in, s, h, released, sizeof released) : US_RELEASE_NONE;
        if (k != US_RELEASE_NONE) {
            append(why, sizeof why, "%s%s", cur->demoting ? "switchover: " : "", released);
            next->active[0] = '\0';
            next->active_inc = 0;
            next->recover = false;
            next->release = k;
            gone = h;
            int64_t lp; /* R12: kept for the next choice, cleared when the role is given */
            if (lost_position(in, s, h, &lp)) {
                next->has_lost_position = true;
                next->lost_position = lp;
            }
            if (d->position[0])
                next->free_since_ms = in->now_ms;
            if (k == US_RELEASE_FAILED || k == US_RELEASE_UNHEALTHY) {
                if (!after_failure(in, s, h, next, why, sizeof why))
                    return false;
            } else {
                switchover = k == US_RELEASE_SWITCHOVER;
                choose = true;
            }
        } else if (h < 0) {
            /* Unknown holder: nothing to judge it by; it keeps the role (as before). */
        } else if ((in->nodes[h].leaving || in->nodes[h].drained) && !cur->demoting &&
                   !cur->recover) {
            /* Maintenance, removal or drain: hand the role over by a planned switchover. */
            next->demoting = true;
            next->target[0] = '\0';
            append(why, sizeof why, "%s is %s: switchover", cur->active,
                   in->nodes[h].leaving ? "leaving" : "drained");
        } else if (holder_unhealthy(in, s, h) && stopping_helps(in, s, h)) {
            const char *cause = obs(in, s, h)->cause;
            next->recover = true;
            append(why, sizeof why, "%s unhealthy: %.160s: stopping it", cur->active,
                   cause[0] ? cause : "health checks failing");
        } else if (!cur->demoting && !cur->recover) {
            int p = failback_node(in, s, cur->active);
            bool is_standby = p >= 0 && in_list((const char(*)[US_NAME_MAX])cur->standbys,
                                                cur->n_standbys, in->nodes[p].name);
            if (p >= 0 && (d->standbys == 0 || (is_standby && standby_ready(in, s, p)))) {
                next->demoting = true;
                us_strlcpy(next->target, in->nodes[p].name, sizeof next->target);
                append(why, sizeof why, "failback to preferred node %s", next->target);
            }
        }
    } else if (cur->restart_node[0]) {
        switch (pending_restart(in, s, next, why, sizeof why)) {
        case PENDING_WAIT:
            return false;
        case PENDING_DROPPED:
            choose = guarded = true;
            break;
        case PENDING_GIVEN:
            break;
        }
    } else if (cur->free_since_ms > 0 && cur->release == US_RELEASE_SWITCHOVER) {
        /* R12: the second round of a planned switchover (the release waited for positions): still
         * a switchover, neither a failover nor under the failover guard. */
        choose = switchover = true;
    } else {
        choose = guarded = true;
    }
    if (choose && !pick_active(in, s, gone, next, switchover, guarded, why, sizeof why))
        return false;
    place_standbys(in, s, next, why, sizeof why);
    update_sync(in, s, next, why, sizeof why);
    bool recorded = record_position(in, s, next);
    next->renew = renews(in, s, next);
    if (same_assignment(cur, next) && !next->renew)
        return false;
    if (!why[0] && (next->renew || recorded) && cur->reason[0])
        us_strlcpy(why, cur->reason, sizeof why); /* the cause of the last transition stays */
    else if (!why[0] && recorded)
        snprintf(why, sizeof why, "position of %s recorded", cur->active);
    else if (!why[0] && next->renew)
        snprintf(why, sizeof why, "role of %s renewed: a voter had revoked its lease", cur->active);
    else if (!why[0])
        snprintf(why, sizeof why, "placement updated");
    us_strlcpy(next->reason, why, sizeof next->reason);
    next->gen = cur->gen;
    return true;
}

static void consider(int64_t *wake, int64_t t, int64_t now)
{
    if (t > now && (*wake == 0 || t < *wake))
        *wake = t;
}

/* R8: when time alone may change a decision for service s, whose assignment is (or will be)
 * `a`. Erring early costs one more round, never a wrong decision. */
static int64_t service_wake(const us_decide_input *in, int s, const us_assignment *a)
{
    const us_service_def *d = &in->defs[s];
    int64_t now = in->now_ms, wake = 0;
    if (!a->active[0] && a->restart_node[0])
        consider(&wake, a->restart_at_ms, now);
    if (!a->active[0] && a->free_since_ms > 0 && d->position[0])
        consider(&wake, a->free_since_ms + fresh_bound_ms(d), now);
    if (d->min_failover_interval_ms > 0 && a->last_failover_ms > 0)
        consider(&wake, a->last_failover_ms + d->min_failover_interval_ms, now);
    for (int i = 0; i < a->n_fail && i < US_MAX_NODES; i++) {
        const us_failrec *f = &a->fail[i];
        int n = find_node(in, f->node);
        if (n < 0 || in->nodes[n].left)
            continue;
        consider(&wake, f->banned_until_ms, now);
        /* A standing failure ends (free role) or a node may be failed back to again. */
        if (!a->active[0] && !f->banned_until_ms)
            consider(&wake, f->window_ms + d->failure_window_ms, now);
        if (d->failback)
            consider(&wake, f->last_ms + d->failure_window_ms, now);
    }
    return wake;
}

/* R0 for a paused service: release a holder lost with its node (lease expired, fenced, agent
 * restarted); a failed or demoted instance keeps the role as it is (processes stay as they are). */
static bool paused_release(const us_decide_input *in, int s, us_assignment *next)
{
    const us_assignment *cur = &in->asg[s];
    int h = cur->active[0] ? find_node(in, cur->active) : -1;
    char released[US_REASON_MAX];
    us_release_kind k = h >= 0 ? release_of(in, s, h, released, sizeof released) : US_RELEASE_NONE;
    if (k != US_RELEASE_FENCED && k != US_RELEASE_LEASE && k != US_RELEASE_AGENT)
        return false;
    *next = *cur;
    next->release = k;
    next->active[0] = '\0';
    next->active_inc = 0;
    next->demoting = false;
    next->target[0] = '\0';
    next->recover = false;
    snprintf(next->reason, sizeof next->reason, "%.200s; paused: no new active", released);
    return true;
}

/* R9 for a paused service: the holder's revoked lease is renewed all the same (pausing must not
 * leave the holder with fewer voters to renew with). */
static bool paused_renew(const us_decide_input *in, int s, us_assignment *next)
{
    if (!renews(in, s, &in->asg[s]))
        return false;
    *next = in->asg[s];
    next->release = US_RELEASE_NONE;
    next->renew = true;
    if (!next->reason[0]) {
        char why[US_REASON_MAX];
        snprintf(why, sizeof why, "role of %s renewed: a voter had revoked its lease",
                 in->asg[s].active);
        us_strlcpy(next->reason, why, sizeof next->reason);
    }
    return true;
}

/* R10: service s got its first active (epoch 1) on a live node that has not reported acting yet. */
static bool placement_pending(const us_decide_input *in, int s)
{
    const us_assignment *a = &in->asg[s];
    if (a->epoch != 1 || !a->active[0])
        return false;
    int n = find_node(in, a->active);
    if (n < 0 || in->node_obs[n].state == US_NODE_DEAD || in->node_obs[n].state == US_NODE_LEFT)
        return false;
    const us_inst_obs *o = obs(in, s, n);
    return o->epoch != a->epoch || o->state == US_INST_NONE || o->state == US_INST_STANDBY;
}

/* R10: a service that has never had an active. */
static bool never_placed(const us_decide_input *in, int s)
{
    return in->asg[s].epoch == 0 && !in->asg[s].active[0];
}

void us_decide(const us_decide_input *in, us_decide_output *out)
{
    out->n = 0;
    out->wake_ms = 0;
    if (!in->has_quorum)
        return;
    int placing = 0;
    for (int s = 0; s < in->n_services; s++)
        placing += placement_pending(in, s);
    for (int s = 0; s < in->n_services; s++) {
        us_decision *dec = &out->d[out->n];
        if (never_placed(in, s) && !in->asg[s].paused && placing >= US_DECIDE_PLACE_BATCH)
            continue; /* R10: placed once earlier placements act (decided again each heartbeat) */
        if (in->asg[s].paused) {
            /* R0: the operator has the service: no decision, no wake; only a holder that surely
             * no longer acts loses the role (nobody gets it), or its node's revoked lease would
             * stay revoked for as long as the pause lasts. */
            if (paused_release(in, s, &dec->next) || paused_renew(in, s, &dec->next)) {
                dec->service = s;
                out->n++;
            }
            continue;
        }
        const us_assignment *fin = &in->asg[s];
        if (decide_service(in, s, &dec->next)) {
            dec->service = s;
            fin = &dec->next;
            out->n++;
            placing += never_placed(in, s) && dec->next.active[0];
        }
        int64_t w = service_wake(in, s, fin);
        if (w && (out->wake_ms == 0 || w < out->wake_ms))
            out->wake_ms = w;
    }
}
