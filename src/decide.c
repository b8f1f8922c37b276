/* decide.c — the decision function; the rules are in docs/decisions.md. */
#include "decide.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

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

/* Every condition of eligibility except the lease. */
static bool qualified(const us_decide_input *in, int s, int n)
{
    const us_node *node = &in->nodes[n];
    const us_inst_obs *r = &in->inst[s][n];
    if (node->left || node->leaving || in->node_obs[n].state != US_NODE_ALIVE)
        return false;
    if (!listed(&in->defs[s], node->name))
        return false;
    if ((r->state == US_INST_FAILED || r->state == US_INST_FENCED) && r->epoch == in->asg[s].epoch)
        return false;
    return true;
}

static bool eligible(const us_decide_input *in, int s, int n)
{
    return in->node_obs[n].lease == US_LEASE_VALID && qualified(in, s, n);
}

/* An existing standby stays unless it surely cannot serve: a brief suspicion or a new leader's
 * lease wait must not churn standbys (a hot standby would be restarted). */
static bool may_stay_standby(const us_decide_input *in, int s, int n)
{
    const us_node *node = &in->nodes[n];
    const us_node_obs *o = &in->node_obs[n];
    const us_inst_obs *r = &in->inst[s][n];
    if (node->left || node->leaving || o->state == US_NODE_DEAD || o->lease == US_LEASE_EXPIRED)
        return false;
    if (!listed(&in->defs[s], node->name))
        return false;
    return !((r->state == US_INST_FAILED || r->state == US_INST_FENCED) &&
             r->epoch == in->asg[s].epoch);
}

/* Nodes of service s in preference order: its `nodes` list, else input order. */
static int preference(const us_decide_input *in, int s, int order[US_MAX_NODES])
{
    const us_service_def *d = &in->defs[s];
    int n = 0;
    if (d->n_nodes == 0) {
        for (int i = 0; i < in->n_nodes; i++)
            order[n++] = i;
        return n;
    }
    for (int i = 0; i < d->n_nodes; i++) {
        int idx = find_node(in, d->nodes[i]);
        if (idx >= 0)
            order[n++] = idx;
    }
    return n;
}

/* Why the holder no longer acts, or NULL-equivalent (false) if it may still be acting. */
static bool release_reason(const us_decide_input *in, int s, int h, char *why, size_t len)
{
    const us_assignment *a = &in->asg[s];
    const us_inst_obs *r = &in->inst[s][h];
    const us_node *node = &in->nodes[h];
    const us_node_obs *o = &in->node_obs[h];
    if (r->epoch == a->epoch) {
        switch (r->state) {
        case US_INST_DEMOTED:
            snprintf(why, len, "%s confirmed demotion", node->name);
            return true;
        case US_INST_FAILED:
            snprintf(why, len, "instance on %s failed (exit status %d)", node->name,
                     r->exit_status);
            return true;
        case US_INST_FENCED:
            snprintf(why, len, "guardian on %s fenced the instance", node->name);
            return true;
        default:
            break;
        }
    }
    if (o->lease == US_LEASE_EXPIRED) {
        snprintf(why, len, "lease of %s expired (last seen %lld ms ago)", node->name,
                 (long long)o->last_seen_ms);
        return true;
    }
    if (node->incarnation != 0 && a->active_inc != 0 && node->incarnation != a->active_inc) {
        snprintf(why, len, "agent on %s restarted", node->name);
        return true;
    }
    return false;
}

static bool in_list(char list[][US_NAME_MAX], int n, const char *name)
{
    for (int i = 0; i < n; i++)
        if (strcmp(list[i], name) == 0)
            return true;
    return false;
}

/* Pick the new active: target, else first eligible standby, else first eligible by preference. */
/* Eligible but for a lease the new leader cannot judge yet (it will within its takeover wait). */
static bool lease_pending(const us_decide_input *in, int s, int n)
{
    return in->node_obs[n].lease == US_LEASE_UNKNOWN && qualified(in, s, n);
}

#define US_WAIT (-2)

/* Pick the new active: target, else first eligible standby, else first eligible by preference.
 * A better-placed node whose lease is still unknown is waited for (US_WAIT), not skipped. */
static int choose_active(const us_decide_input *in, int s, const char **how)
{
    const us_assignment *a = &in->asg[s];
    if (a->target[0]) {
        int t = find_node(in, a->target);
        if (t >= 0 && lease_pending(in, s, t))
            return US_WAIT;
        if (t >= 0 && eligible(in, s, t)) {
            *how = "requested target";
            return t;
        }
    }
    for (int i = 0; i < a->n_standbys; i++) {
        int n = find_node(in, a->standbys[i]);
        if (n >= 0 && lease_pending(in, s, n))
            return US_WAIT;
        if (n >= 0 && eligible(in, s, n)) {
            *how = "standby";
            return n;
        }
    }
    int order[US_MAX_NODES];
    int n_order = preference(in, s, order);
    for (int i = 0; i < n_order; i++) {
        if (lease_pending(in, s, order[i]))
            return US_WAIT;
        if (eligible(in, s, order[i])) {
            *how = "first eligible in preference order";
            return order[i];
        }
    }
    return -1;
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

/* Recompute the standby list of `next`; describe drops/additions in `why`. */
static void place_standbys(const us_decide_input *in, int s, us_assignment *next, char *why,
                           size_t len)
{
    const us_service_def *d = &in->defs[s];
    char keep[US_MAX_NODES][US_NAME_MAX];
    int n_keep = 0;
    for (int i = 0; i < next->n_standbys; i++) {
        const char *name = next->standbys[i];
        int n = find_node(in, name);
        if (strcmp(name, next->active) == 0)
            continue;
        if (n < 0 || !may_stay_standby(in, s, n)) {
            const char *cause = "not eligible";
            if (n < 0 || in->nodes[n].left)
                cause = "node left";
            else if (in->node_obs[n].state == US_NODE_DEAD)
                cause = "node dead";
            else if (in->nodes[n].leaving)
                cause = "node leaving";
            append(why, len, "%sstandby %s dropped (%s)", why[0] ? "; " : "", name, cause);
            continue;
        }
        if (n_keep < d->standbys)
            us_strlcpy(keep[n_keep++], name, US_NAME_MAX);
    }
    int order[US_MAX_NODES];
    int n_order = preference(in, s, order);
    for (int i = 0; i < n_order && n_keep < d->standbys; i++) {
        const char *name = in->nodes[order[i]].name;
        if (strcmp(name, next->active) == 0 || in_list(keep, n_keep, name) ||
            !eligible(in, s, order[i]))
            continue;
        us_strlcpy(keep[n_keep++], name, US_NAME_MAX);
        if (!in_list(next->standbys, next->n_standbys, name))
            append(why, len, "%sstandby %s added", why[0] ? "; " : "", name);
    }
    next->n_standbys = n_keep;
    memcpy(next->standbys, keep, sizeof keep[0] * (size_t)n_keep);
}

static bool same_assignment(const us_assignment *a, const us_assignment *b)
{
    if (strcmp(a->active, b->active) != 0 || a->active_inc != b->active_inc ||
        a->epoch != b->epoch || a->demoting != b->demoting || strcmp(a->target, b->target) != 0 ||
        a->n_standbys != b->n_standbys)
        return false;
    for (int i = 0; i < a->n_standbys; i++)
        if (strcmp(a->standbys[i], b->standbys[i]) != 0)
            return false;
    return true;
}

static void decide_service(const us_decide_input *in, int s, us_decide_output *out)
{
    const us_assignment *cur = &in->asg[s];
    us_assignment next = *cur;
    char why[US_REASON_MAX] = "";

    if (cur->active[0]) {
        int h = find_node(in, cur->active);
        char released[US_REASON_MAX];
        if (h >= 0 && release_reason(in, s, h, released, sizeof released)) {
            append(why, sizeof why, "%s%s", cur->demoting ? "switchover: " : "", released);
            next.active[0] = '\0';
            next.active_inc = 0;
        } else if (h >= 0 && in->nodes[h].leaving && !cur->demoting) {
            /* Maintenance or removal: hand the role over by a planned switchover. */
            next.demoting = true;
            next.target[0] = '\0';
            append(why, sizeof why, "%s is leaving: switchover", cur->active);
        }
    }
    if (next.active[0] == '\0') {
        const char *how = "";
        int c = choose_active(in, s, &how);
        if (c == US_WAIT)
            return; /* decide again once the new leader knows that node's lease */
        if (c >= 0) {
            us_strlcpy(next.active, in->nodes[c].name, sizeof next.active);
            next.active_inc = in->nodes[c].incarnation;
            next.epoch = cur->epoch + 1;
            next.demoting = false;
            next.target[0] = '\0';
            if (why[0])
                append(why, sizeof why, "; %s promoted (%s)", next.active, how);
            else if (cur->epoch == 0)
                append(why, sizeof why, "initial placement on %s (%s)", next.active, how);
            else
                append(why, sizeof why, "%s promoted (%s)", next.active, how);
        } else if (why[0] || cur->demoting) {
            next.demoting = false;
            next.target[0] = '\0';
            append(why, sizeof why, "%sno eligible node for the active role", why[0] ? "; " : "");
        }
    }
    place_standbys(in, s, &next, why, sizeof why);
    if (same_assignment(cur, &next))
        return;
    if (!why[0])
        snprintf(why, sizeof why, "placement updated");
    us_strlcpy(next.reason, why, sizeof next.reason);
    next.gen = cur->gen;
    us_decision *d = &out->d[out->n++];
    d->service = s;
    d->next = next;
}

void us_decide(const us_decide_input *in, us_decide_output *out)
{
    out->n = 0;
    if (!in->has_quorum)
        return;
    for (int s = 0; s < in->n_services; s++)
        decide_service(in, s, out);
}
