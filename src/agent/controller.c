/* controller.c — see controller.h. */
#include "agent/controller.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/reports.h"
#include "core/decide.h"
#include "lib/clock.h"
#include "lib/hostport.h"
#include "lib/log.h"

static const us_view_member *member(const us_cluster_view *v, uint64_t id)
{
    for (int i = 0; i < v->n_members; i++)
        if (v->members[i].id == id)
            return &v->members[i];
    return NULL;
}

static const us_view_node *node_named(const us_cluster_view *v, const char *name)
{
    for (int i = 0; i < v->n_nodes; i++)
        if (strcmp(v->nodes[i].name, name) == 0)
            return &v->nodes[i];
    return NULL;
}

static const us_view_node *node_by_id(const us_cluster_view *v, uint64_t id)
{
    for (int i = 0; i < v->n_nodes; i++)
        if (v->nodes[i].id == id)
            return &v->nodes[i];
    return NULL;
}

static int count_voters(const us_cluster_view *v)
{
    int n = 0;
    for (int i = 0; i < v->n_members; i++)
        n += v->members[i].role == US_MEMBER_VOTER;
    return n;
}

static int propose(us_controller *c, json_t *cmd, us_propose_done done, void *arg)
{
    return c->env.propose(c->env.data, cmd, done, arg);
}

static const char *errtext(us_controller *c, int rc)
{
    return c->env.strerror ? c->env.strerror(rc) : "error";
}

static us_event make_event(const char *kind, const char *service, const char *node,
                           const char *from, const char *to, const char *cause)
{
    us_event e = {0};
    us_strlcpy(e.kind, kind, sizeof e.kind);
    us_strlcpy(e.service, service ? service : "", sizeof e.service);
    us_strlcpy(e.node, node ? node : "", sizeof e.node);
    us_strlcpy(e.from, from, sizeof e.from);
    us_strlcpy(e.to, to, sizeof e.to);
    us_strlcpy(e.cause, cause, sizeof e.cause);
    return e;
}

static void record_event(us_controller *c, us_event e, int64_t wall_ms)
{
    e.time_ms = wall_ms;
    us_info("event: %s %s%s%s %s -> %s: %s", e.kind, e.service, e.service[0] ? " " : "", e.node,
            e.from, e.to, e.cause);
    propose(c, us_cmd_event(&e), NULL, NULL);
}

/* Record an observation as an event in the replicated history. */
static void record(us_controller *c, const us_cluster_view *v, const char *kind,
                   const char *service, const char *node, const char *from, const char *to,
                   const char *cause)
{
    record_event(c, make_event(kind, service, node, from, to, cause), v->wall_ms);
}

static int alive_members(const us_cluster_view *v)
{
    int n = 0;
    for (int i = 0; i < v->n_members; i++) {
        const us_view_node *p = node_by_id(v, v->members[i].id);
        n += p && p->state == US_NODE_ALIVE;
    }
    return n;
}

/* 3 voters, 5 once 5 members are alive: one more failure (two) can always be survived. */
static int desired_voters(const us_cluster_view *v)
{
    int members = v->n_members;
    if (alive_members(v) >= 5)
        return 5;
    return members >= 3 ? 3 : members;
}

/* ---- membership changes (one at a time, as libraft requires) ---- */

typedef struct change_req {
    us_controller *ctl;
    uint64_t id;
    int role;            /* after an add: the role to assign; -1 none */
    us_event done_event; /* recorded once the change succeeded (kind "" = none) */
} change_req;

static void change_done(void *arg, int status);

/* `done` (may be NULL): the event to record once the change took effect. */
static void assign_role(us_controller *c, uint64_t id, us_member_role role, const us_event *done)
{
    change_req *r = calloc(1, sizeof *r);
    if (!r)
        return;
    r->ctl = c;
    r->id = id;
    r->role = -1;
    if (done)
        r->done_event = *done;
    c->change_in_flight = true;
    int rc = c->env.assign(c->env.data, id, role, change_done, r);
    if (rc != 0) { /* the environment said why */
        c->change_in_flight = false;
        free(r);
    }
}

static void change_done(void *arg, int status)
{
    change_req *r = arg;
    us_controller *c = r->ctl;
    c->change_in_flight = false;
    bool leader = c->env.is_leader(c->env.data);
    if (status != 0)
        us_warn("membership change failed: %s", errtext(c, status));
    else if (r->role >= 0 && leader)
        assign_role(c, r->id, (us_member_role)r->role, NULL);
    if (status == 0 && r->done_event.kind[0] && leader)
        record_event(c, r->done_event, c->env.wall_ms ? c->env.wall_ms(c->env.data) : us_wall_ms());
    free(r);
    c->env.schedule_reconcile(c->env.data);
}

void us_controller_join_request(us_controller *c, const us_cluster_view *v, const char *name,
                                const char *address)
{
    if (!name || !address || !us_name_valid(name) || c->change_in_flight)
        return;
    struct sockaddr_in sa;
    if (us_sockaddr_parse(address, &sa) != 0)
        return;
    uint64_t id = us_node_id(name);
    if (member(v, id))
        return; /* already in; registration follows from its heartbeats */
    const us_state *s = v->state;
    int i = us_state_find_node(s, name);
    if (i >= 0 && s->nodes[i].left && v->applies_in_flight == 0) {
        /* A removed node may come back: forget that it left. */
        propose(c, us_cmd_stamp(us_cmd_node_flags(name, false, false, false), v->wall_ms, NULL),
                NULL, NULL);
    }
    change_req *r = calloc(1, sizeof *r);
    if (!r)
        return;
    r->ctl = c;
    r->id = id;
    bool voter =
        count_voters(v) < desired_voters(v) || (count_voters(v) < 5 && v->n_members + 1 >= 5);
    r->role = voter ? US_MEMBER_VOTER : US_MEMBER_STANDBY;
    c->change_in_flight = true;
    int rc = c->env.add(c->env.data, id, address, change_done, r);
    if (rc != 0) {
        us_warn("cannot add %s: %s", name, errtext(c, rc));
        c->change_in_flight = false;
        free(r);
        return;
    }
    us_info("adding node %s (%s) as %s", name, address, voter ? "voter" : "non-voter");
}

static void transfer_done(void *arg, int status)
{
    (void)status;
    us_controller *c = arg;
    c->change_in_flight = false;
    /* Still the leader: the target did not take over in time (libraft gives up after an
     * election timeout). Try again soon rather than leave leader and active together. */
    c->transfer_failed = c->env.is_leader(c->env.data);
}

static void transfer_leadership(us_controller *c, uint64_t to, const char *why)
{
    if (c->change_in_flight)
        return;
    c->change_in_flight = true;
    int rc = c->env.transfer(c->env.data, to, transfer_done, c);
    if (rc != 0) {
        c->change_in_flight = false;
        us_debug("leadership transfer not started: %s", errtext(c, rc));
        return;
    }
    us_info("transferring leadership: %s", why);
}

int us_controller_hand_over(us_controller *c, us_change_done done, void *arg)
{
    if (c->change_in_flight)
        return 1;
    c->change_in_flight = true; /* for good: the agent stops */
    return c->env.transfer(c->env.data, 0, done, arg);
}

/* Losing the node that is both leader and active would cost an election on top of the lease:
 * keep leadership on a voter that holds no active role when there is one. The target must have
 * applied all we have (as its latest grant says): a node that just came back and is still
 * catching up cannot take over in time, and the failed transfer would leave leader and active
 * together for longer. A failed transfer is retried after a few heartbeats. */
static void leadership_away_from_actives(us_controller *c, const us_cluster_view *v)
{
    const us_state *s = v->state;
    int64_t now = v->now_ms;
    if (c->transfer_failed) {
        c->transfer_failed = false;
        c->next_transfer_ms = now + 3 * c->env.cfg->timing.heartbeat_ms;
    }
    /* No wait after taking over: the node just promoted is often the leader itself. Not while a
     * configuration change is pending: the next leader would inherit it half-done. */
    if (c->change_in_flight || v->config_uncommitted || now < c->next_transfer_ms ||
        !us_state_holds_active(s, c->env.cfg->name))
        return;
    for (int i = 0; i < v->n_members; i++) {
        const us_view_node *p = node_by_id(v, v->members[i].id);
        int k = p ? us_state_find_node(s, p->name) : -1;
        if (v->members[i].role != US_MEMBER_VOTER || !p || p->self || k < 0 ||
            s->nodes[k].leaving || p->state != US_NODE_ALIVE ||
            c->env.judge_lease(c->env.data, p->name, now, NULL) != US_LEASE_VALID ||
            us_state_holds_active(s, p->name) || p->version < s->version)
            continue;
        /* Bound while it runs; a failure brings the retry closer (transfer_done). */
        c->next_transfer_ms = now + 2000;
        char why[US_NAME_MAX + 64];
        snprintf(why, sizeof why, "to %s, which holds no active role", p->name);
        transfer_leadership(c, p->id, why);
        return;
    }
}

/* Carry out `understudy node remove` once the node holds no active role. */
static bool removals(us_controller *c, const us_cluster_view *v)
{
    const us_state *s = v->state;
    for (int i = 0; i < s->n_nodes; i++) {
        const us_node *n = &s->nodes[i];
        if (!n->removing && !n->left)
            continue;
        if (n->left) {
            if (!member(v, n->id) || c->change_in_flight || strcmp(n->name, c->env.cfg->name) == 0)
                continue;
            change_req *r = calloc(1, sizeof *r);
            if (!r)
                return true;
            r->ctl = c;
            r->id = n->id;
            r->role = -1;
            c->change_in_flight = true;
            if (c->env.remove(c->env.data, n->id, change_done, r) != 0) {
                c->change_in_flight = false;
                free(r);
            } else {
                us_info("removing node %s from the Raft configuration", n->name);
            }
            return true;
        }
        if (us_state_holds_active(s, n->name))
            continue; /* the decision function is handing its roles over */
        if (strcmp(n->name, c->env.cfg->name) == 0) {
            /* A leader must not remove itself: hand leadership over, the next one removes us. */
            transfer_leadership(c, 0, "this node is being removed");
            continue;
        }
        if (v->applies_in_flight == 0) {
            us_info("node %s holds no active role any more: marking it left", n->name);
            propose(c,
                    us_cmd_stamp(us_cmd_node_flags(n->name, true, false, true), v->wall_ms, NULL),
                    NULL, NULL);
            return true;
        }
    }
    return false;
}

/* An alive member that does not vote and may (not leaving or removed). */
static const us_view_node *spare_voter(const us_cluster_view *v)
{
    const us_state *s = v->state;
    for (int i = 0; i < v->n_members; i++) {
        if (v->members[i].role == US_MEMBER_VOTER)
            continue;
        const us_view_node *p = node_by_id(v, v->members[i].id);
        int k = p ? us_state_find_node(s, p->name) : -1;
        if (p && p->state == US_NODE_ALIVE &&
            (k < 0 || (!s->nodes[k].leaving && !s->nodes[k].removing && !s->nodes[k].left)))
            return p;
    }
    return NULL;
}

/* Autopilot: a voter dead longer than the grace period gives its vote to an alive member, so the
 * cluster can again survive one more failure. Demote first (the dead vote no longer counts),
 * then keep_voters promotes. */
static bool replace_dead_voter(us_controller *c, const us_cluster_view *v)
{
    int64_t now = v->now_ms;
    int grace = c->env.cfg->autopilot_grace_ms;
    const us_view_node *spare = spare_voter(v);
    /* Without a replacement, fewer voters still help when they restore a spare failure: 3 alive
     * of 5 voters survive none more, 3 alive of 3 survive one. */
    if (c->change_in_flight || now - c->leader_since_ms < grace ||
        (!spare && count_voters(v) <= desired_voters(v)))
        return false;
    for (int i = 0; i < v->n_members; i++) {
        const us_view_node *p = node_by_id(v, v->members[i].id);
        if (v->members[i].role != US_MEMBER_VOTER || !p || p->self || p->state != US_NODE_DEAD)
            continue;
        int64_t silent = p->last_seen_ms < 0 ? now - c->leader_since_ms : now - p->last_seen_ms;
        if (silent < grace)
            continue;
        char why[US_REASON_MAX];
        if (spare)
            snprintf(why, sizeof why,
                     "autopilot: voter %s dead for %lld ms (grace %d ms): its vote goes to %s",
                     p->name, (long long)silent, grace, spare->name);
        else
            snprintf(why, sizeof why,
                     "autopilot: voter %s dead for %lld ms (grace %d ms): %d voters are enough",
                     p->name, (long long)silent, grace, desired_voters(v));
        us_event e = make_event("voter", NULL, p->name, "voter", "non-voter", why);
        assign_role(c, v->members[i].id, US_MEMBER_STANDBY, &e);
        return true;
    }
    return false;
}

static void keep_voters(us_controller *c, const us_cluster_view *v)
{
    if (replace_dead_voter(c, v))
        return;
    if (c->change_in_flight || count_voters(v) >= desired_voters(v))
        return;
    const us_view_node *p = spare_voter(v);
    if (p) {
        char why[US_REASON_MAX];
        snprintf(why, sizeof why, "autopilot: keeping %d voters", desired_voters(v));
        us_event e = make_event("voter", NULL, p->name, "non-voter", "voter", why);
        assign_role(c, p->id, US_MEMBER_VOTER, &e);
    }
}

/* ---- events the leader observes (liveness, health, standby restarts) ---- */

void us_controller_init(us_controller *c, const us_controller_env *env)
{
    memset(c, 0, sizeof *c);
    c->env = *env;
}

void us_controller_free(us_controller *c)
{
    free(c->seen);
    free(c->dec_inst);
    free(c->dec_fenced);
    free(c->rep);
    us_index_free(&c->seen_ix);
    us_index_free(&c->svc_ix);
    c->seen = NULL;
    c->dec_inst = NULL;
    c->dec_fenced = NULL;
    c->rep = NULL;
    c->n_seen = c->cap_seen = c->dec_cap = 0;
    c->pairs_fp = 0;
}

void us_controller_became_leader(us_controller *c, int64_t now_ms)
{
    c->primed = false;
    c->pairs_fp = 0;
    c->n_seen = 0;
    us_index_clear(&c->seen_ix);
    c->n_timing = 0;
    c->leader_since_ms = now_ms;
}

/* The pair's entry; `hint` is where it was last time (pairs come in the same order each tick, so
 * the search is one comparison while nothing changes). NULL when out of memory. */
static us_ctl_seen *seen(us_controller *c, int hint, const char *service, const char *node,
                         bool *fresh)
{
    *fresh = false;
    if (hint >= 0 && hint < c->n_seen && strcmp(c->seen[hint].service, service) == 0 &&
        strcmp(c->seen[hint].node, node) == 0)
        return &c->seen[hint];
    uint32_t h = us_index_hash(service, node), pos = US_INDEX_START;
    for (int i; (i = us_index_next(&c->seen_ix, h, &pos)) >= 0;)
        if (i < c->n_seen && strcmp(c->seen[i].service, service) == 0 &&
            strcmp(c->seen[i].node, node) == 0)
            return &c->seen[i];
    if (c->n_seen == US_MAX_SERVICES * US_MAX_NODES) {
        /* Pairs of renamed services and removed nodes piled up: start over (silently). */
        c->n_seen = 0;
        us_index_clear(&c->seen_ix);
        *fresh = true;
    }
    if (c->n_seen == c->cap_seen) {
        int cap = c->cap_seen ? 2 * c->cap_seen : 64;
        if (cap > US_MAX_SERVICES * US_MAX_NODES)
            cap = US_MAX_SERVICES * US_MAX_NODES;
        us_ctl_seen *x = realloc(c->seen, (size_t)cap * sizeof *x);
        if (!x)
            return NULL;
        c->seen = x;
        c->cap_seen = cap;
    }
    if (!us_index_add(&c->seen_ix, h, c->n_seen))
        return NULL;
    us_ctl_seen *x = &c->seen[c->n_seen++];
    memset(x, 0, sizeof *x);
    us_strlcpy(x->service, service, sizeof x->service);
    us_strlcpy(x->node, node, sizeof x->node);
    *fresh = true;
    return x;
}

static void node_events(us_controller *c, const us_cluster_view *v)
{
    const us_state *s = v->state;
    for (int i = 0; i < v->n_nodes; i++) {
        const us_view_node *p = &v->nodes[i];
        us_node_state st = p->state;
        us_node_state was = c->node[i];
        c->node[i] = st;
        if (!c->primed || st == was || st == US_NODE_LEFT || was == US_NODE_LEFT ||
            us_state_find_node(s, p->name) < 0)
            continue;
        char why[US_REASON_MAX];
        if (st == US_NODE_ALIVE) {
            snprintf(why, sizeof why, "%s answers again", p->name);
        } else if (p->dead_inc != 0 && p->dead_inc == p->inc) {
            snprintf(why, sizeof why, "the guardian on %s reports that its agent died", p->name);
        } else if (p->last_seen_ms < 0) {
            snprintf(why, sizeof why, "%s not heard from since this leader started", p->name);
        } else {
            int64_t age = v->now_ms - p->last_seen_ms;
            snprintf(why, sizeof why, "%s missed %lld heartbeats (last seen %lld ms ago)", p->name,
                     (long long)(age / c->env.cfg->timing.heartbeat_ms), (long long)age);
        }
        record(c, v, "node", NULL, p->name, us_node_state_name(was), us_node_state_name(st), why);
    }
}

/* What `p` reports about `service` (reports.h), NULL if nothing. */
static const us_report *report_about(const us_view_node *p, const char *service)
{
    return us_report_find(p->reports, p->n_reports, service);
}

static us_inst_obs report_obs(const us_view_node *p, const us_report *r, const us_assignment *as);

static us_inst_obs report_of(const us_view_node *p, const us_assignment *as)
{
    return report_obs(p, report_about(p, as->service), as);
}

/* Room for n services in the per-tick tables (grown, kept). false when out of memory. */
static bool ensure_cap(us_controller *c, int n)
{
    if (n < 1)
        n = 1;
    if (n <= c->dec_cap)
        return true;
    void *inst = realloc(c->dec_inst, (size_t)n * US_MAX_NODES * sizeof *c->dec_inst);
    if (inst)
        c->dec_inst = inst;
    void *d = inst ? realloc(c->dec_fenced, (size_t)n * sizeof *c->dec_fenced) : NULL;
    if (d)
        c->dec_fenced = d;
    void *rep = d ? realloc(c->rep, (size_t)n * sizeof *c->rep) : NULL;
    if (rep)
        c->rep = rep;
    if (!inst || !d || !rep) {
        us_error("controller: out of memory for %d services", n);
        return false;
    }
    c->dec_cap = n;
    return true;
}

/* The state's index of service k by name (svc_ix), built again every tick: 1,000 hashes. */
static int service_index(us_controller *c, const us_state *s, const char *name)
{
    uint32_t h = us_index_hash(name, NULL), pos = US_INDEX_START;
    for (int k; (k = us_index_next(&c->svc_ix, h, &pos)) >= 0;)
        if (k < s->services.n && strcmp(s->services.svc[k].name, name) == 0)
            return k;
    return -1;
}

/* Once per tick: each replicated node's view node (pv) and its report about each service (rep):
 * a node reports only the services it runs (reports.h), so each report is placed by the
 * service's name and every other pair has none. Linear in services x nodes plus reports. */
static bool index_reports(us_controller *c, const us_cluster_view *v)
{
    const us_state *s = v->state;
    if (!ensure_cap(c, s->services.n))
        return false;
    us_index_clear(&c->svc_ix);
    for (int k = 0; k < s->services.n; k++)
        if (!us_index_add(&c->svc_ix, us_index_hash(s->services.svc[k].name, NULL), k)) {
            us_error("controller: out of memory for the index of %d services", s->services.n);
            return false;
        }
    for (int k = 0; k < s->services.n; k++)
        for (int n = 0; n < s->n_nodes; n++)
            c->rep[k][n] = NULL;
    for (int n = 0; n < s->n_nodes; n++) {
        const us_view_node *p = c->pv[n] = node_named(v, s->nodes[n].name);
        for (int j = 0; p && j < p->n_reports; j++) {
            int k = service_index(c, s, p->reports[j].service);
            if (k >= 0 && !c->rep[k][n]) /* the first, as us_report_find */
                c->rep[k][n] = &p->reports[j];
        }
    }
    return true;
}

/* The pairs instance_events walks, in its order: never 0. */
static uint64_t pairs_fingerprint(const us_controller *c, const us_state *s)
{
    uint64_t h = US_FP_START;
    for (int n = 0; n < s->n_nodes; n++)
        h = us_fp_add(h, c->pv[n] && !s->nodes[n].left ? s->nodes[n].name : "");
    h ^= (uint64_t)s->n_nodes << 32 | (uint64_t)s->services.n;
    for (int k = 0; k < s->services.n; k++)
        h = us_fp_add(h, s->asg[k].service);
    return h ? h : 1;
}

static void instance_events(us_controller *c, const us_cluster_view *v)
{
    const us_state *s = v->state;
    uint64_t fp = pairs_fingerprint(c, s);
    bool same = fp == c->pairs_fp; /* seen[pair] is the pair's entry */
    bool identity = true;          /* ... and will be after this walk */
    int pair = 0;
    for (int k = 0; k < s->services.n; k++) {
        const us_assignment *as = &s->asg[k];
        const us_service_def *d = &s->services.svc[k];
        for (int n = 0; n < s->n_nodes; n++) {
            const us_view_node *p = c->pv[n];
            if (!p || s->nodes[n].left)
                continue;
            const us_report *r = c->rep[k][n];
            /* Health and its cause as reported: a guardian's announcement (report_obs) changes
             * neither, so no copy of the 288-byte observation per pair and tick (20,000 pairs
             * with 800 services on 25 nodes were 10 % of an idle leader's time). */
            static const us_inst_obs nothing;
            const us_inst_obs *o = r ? &r->obs : &nothing;
            int restarts = r ? r->restarts : 0;
            const char *restart_cause = r ? r->restart_cause : "";
            bool fresh = false;
            us_ctl_seen *x = same && pair < c->n_seen ? &c->seen[pair]
                                                      : seen(c, pair, as->service, p->name, &fresh);
            if (!x) {
                c->pairs_fp = 0;
                return;
            }
            identity = identity && x == &c->seen[pair];
            pair++;
            us_health was = x->health;
            int restarts_was = x->restarts;
            x->health = o->health;
            x->restarts = restarts;
            if (!c->primed || fresh)
                continue;
            /* To `unknown` only means the checks stopped with the instance: role events say why. */
            if (o->health != was && o->health != US_HEALTH_UNKNOWN) {
                char why[US_REASON_MAX];
                if (o->health == US_HEALTH_HEALTHY)
                    snprintf(why, sizeof why, "checks passed %d time%s in a row", d->rise,
                             d->rise == 1 ? "" : "s");
                else
                    snprintf(why, sizeof why, "%s", o->cause[0] ? o->cause : "checks failing");
                record(c, v, "health", as->service, p->name, us_health_name(was),
                       us_health_name(o->health), why);
            }
            if (restarts > restarts_was)
                record(c, v, "restart", as->service, p->name, "exited", "restarted",
                       restart_cause[0] ? restart_cause : "standby process exited");
        }
    }
    c->pairs_fp = identity ? fp : 0;
}

/* Record each agent's incarnation and addresses in the replicated node list. */
static bool register_nodes(us_controller *c, const us_cluster_view *v)
{
    const us_state *s = v->state;
    for (int i = 0; i < v->n_nodes; i++) {
        const us_view_node *p = &v->nodes[i];
        const us_view_member *srv = member(v, p->id);
        if (!srv || p->inc == 0 || !p->api[0] || !p->address[0])
            continue;
        int k = us_state_find_node(s, p->name);
        bool voter = srv->role == US_MEMBER_VOTER;
        if (k >= 0 && s->nodes[k].incarnation == p->inc && s->nodes[k].voter == voter &&
            strcmp(s->nodes[k].address, p->address) == 0 && strcmp(s->nodes[k].api, p->api) == 0 &&
            strcmp(s->nodes[k].service_host, p->service_host) == 0)
            continue;
        if (k >= 0 && s->nodes[k].left && s->nodes[k].incarnation == p->inc)
            continue;
        us_node n = {0};
        us_strlcpy(n.name, p->name, sizeof n.name);
        n.id = p->id;
        us_strlcpy(n.address, p->address, sizeof n.address);
        us_strlcpy(n.api, p->api, sizeof n.api);
        us_strlcpy(n.service_host, p->service_host, sizeof n.service_host);
        n.incarnation = p->inc;
        n.voter = voter;
        if (k >= 0 && s->nodes[k].incarnation == p->inc) {
            /* Only the voter flag or an address changed: keep maintenance flags. */
            n.leaving = s->nodes[k].leaving;
            n.removing = s->nodes[k].removing;
        }
        uint64_t adopts =
            k >= 0 && p->adopts && p->adopts == s->nodes[k].incarnation ? p->adopts : 0;
        propose(c, us_cmd_stamp(us_cmd_node_up_adopting(&n, adopts), v->wall_ms, NULL), NULL, NULL);
        return true;
    }
    return false;
}

/* Did p's guardian announce that it fenced the holder of exactly this assignment? */
static bool guardian_fenced(const us_view_node *p, const us_assignment *as)
{
    if (strcmp(as->active, p->name) != 0)
        return false;
    for (int i = 0; i < p->n_fenced; i++)
        /* After a planned restart, until the registration moves the role, the guardian
         * announces as the adopting agent's incarnation. */
        if (strcmp(p->fenced_service[i], as->service) == 0 && p->fenced_epoch[i] == as->epoch &&
            (p->fenced_inc[i] == as->active_inc ||
             (p->adopts && p->adopts == as->active_inc && p->fenced_inc[i] == p->inc)))
            return true;
    return false;
}

static us_inst_obs report_obs(const us_view_node *p, const us_report *r, const us_assignment *as)
{
    us_inst_obs o = {0};
    if (r)
        o = r->obs;
    /* A guardian announcement for exactly this assignment overrides a stale report. */
    if (guardian_fenced(p, as)) {
        o.state = US_INST_FENCED;
        o.epoch = as->epoch;
        o.exit_status = 137;
    }
    return o;
}

/* ---- failover timing (metrics.failover) ---- */

/* Our decision `next` takes the role from cur->active for a failure or loss: start timing, unless
 * an earlier decision for the same release (not committed, made again) already did. */
static void time_release(us_controller *c, const us_cluster_view *v, const us_assignment *cur,
                         const us_assignment *next)
{
    bool released =
        cur->active[0] && (strcmp(cur->active, next->active) != 0 || cur->epoch != next->epoch);
    if (!released || us_release_cause(next->release) == US_CAUSE_SWITCHOVER)
        return;
    us_ctl_timing *t = NULL;
    for (int i = 0; i < c->n_timing && !t; i++)
        if (strcmp(c->timing[i].service, cur->service) == 0)
            t = &c->timing[i];
    if (t && strcmp(t->from, cur->active) == 0 && t->epoch == cur->epoch)
        return;
    if (!t) {
        if (c->n_timing == US_MAX_SERVICES)
            return; /* more timings than services: stale ones are dropped by time_failovers */
        t = &c->timing[c->n_timing++];
    }
    us_strlcpy(t->service, cur->service, sizeof t->service);
    us_strlcpy(t->from, cur->active, sizeof t->from);
    t->epoch = cur->epoch;
    t->t0_ns = v->now_ns;
}

/* Finish the timings whose service now has an active elsewhere that reports itself ACTIVE. The
 * role given back to the released node is a restart in place, not a failover: not timed. */
static void time_failovers(us_controller *c, const us_cluster_view *v)
{
    const us_state *s = v->state;
    int64_t now = v->now_ns;
    for (int i = 0; i < c->n_timing;) {
        us_ctl_timing *t = &c->timing[i];
        int k = us_state_find_service(s, t->service);
        const us_assignment *as = k >= 0 ? &s->asg[k] : NULL;
        const us_view_node *p = as && as->active[0] ? node_named(v, as->active) : NULL;
        bool done = !as || now - t->t0_ns > 3600 * 1000000000LL;
        if (!done && p && as->epoch > t->epoch) {
            us_inst_obs o = report_of(p, as);
            if (strcmp(as->active, t->from) == 0) {
                done = true;
            } else if (o.state == US_INST_ACTIVE && o.epoch == as->epoch) {
                double secs = (double)(now - t->t0_ns) / 1e9;
                if (c->env.failover)
                    c->env.failover(c->env.data, secs);
                us_info("%s: failover from %s to %s took %.3f s (decision to active)", t->service,
                        t->from, as->active, secs);
                done = true;
            }
        }
        if (done)
            *t = c->timing[--c->n_timing];
        else
            i++;
    }
}

static void decided_cb(void *data, int status, int result)
{
    (void)data;
    (void)status;
    (void)result;
}

static void run_decisions(us_controller *c, const us_cluster_view *v)
{
    static us_decide_input in; /* the loop is single-threaded */
    static us_decide_output out;
    static const us_inst_obs nothing; /* what a node that reports nothing reports */
    const us_state *s = v->state;
    int64_t now = v->now_ms;
    memset(&in, 0, sizeof in);
    memset(&out, 0, sizeof out);
    /* Room for a decision per service, for this round only: a large block is mapped (mem.h), so
     * only the decisions written are resident, and only until they are proposed. */
    out.d = malloc((size_t)(s->services.n > 0 ? s->services.n : 1) * sizeof *out.d);
    if (!out.d) {
        us_error("controller: out of memory for %d decisions", s->services.n);
        return;
    }
    in.has_quorum = v->has_quorum;
    in.now_ms = v->wall_ms;
    us_strlcpy(in.leader, c->env.cfg->name, sizeof in.leader);
    in.n_nodes = s->n_nodes;
    for (int n = 0; n < s->n_nodes; n++) {
        in.nodes[n] = s->nodes[n];
        const us_view_node *p = node_named(v, s->nodes[n].name);
        us_node_obs *o = &in.node_obs[n];
        if (!p) {
            o->state = s->nodes[n].left ? US_NODE_LEFT : US_NODE_DEAD;
            o->lease = US_LEASE_UNKNOWN;
            o->last_seen_ms = -1;
            continue;
        }
        o->state = p->state;
        o->lease = c->env.judge_lease(c->env.data, p->name, now, &o->revoked);
        o->last_seen_ms = p->self ? 0 : p->last_seen_ms < 0 ? -1 : now - p->last_seen_ms;
    }
    in.n_services = s->services.n;
    in.defs = s->services.svc;
    in.asg = s->asg;
    in.inst = c->dec_inst;
    for (int k = 0; k < s->services.n; k++) {
        for (int n = 0; n < s->n_nodes; n++) {
            const us_view_node *p = c->pv[n];
            const us_report *r = c->rep[k][n];
            const us_inst_obs *o = p && r ? &r->obs : &nothing;
            if (p && guardian_fenced(p, &s->asg[k])) {
                c->dec_fenced[k] = report_obs(p, r, &s->asg[k]);
                o = &c->dec_fenced[k];
            }
            c->dec_inst[(size_t)k * (size_t)s->n_nodes + (size_t)n] = o;
        }
    }
    us_decide(&in, &out);
    for (int i = 0; i < out.n; i++) {
        const us_assignment *next = &out.d[i].next;
        time_release(c, v, &s->asg[out.d[i].service], next);
        if (next->renew && strcmp(next->reason, s->asg[out.d[i].service].reason) == 0)
            us_info("%s: renewing the role of %s: a voter revoked its lease, a majority renews it",
                    next->service, next->active);
        else
            us_info("%s: %s [active %s, epoch %llu]", next->service, next->reason,
                    next->active[0] ? next->active : "none", (unsigned long long)next->epoch);
        propose(c,
                us_cmd_hint(us_cmd_stamp(us_cmd_assign(next), in.now_ms, NULL), out.d[i].service),
                decided_cb, NULL);
    }
    free(out.d);
    out.d = NULL;
    if (out.wake_ms > in.now_ms && c->env.wake) /* a backoff or cooldown ends: decide again */
        c->env.wake(c->env.data, out.wake_ms - in.now_ms);
}

void us_controller_tick(us_controller *c, const us_cluster_view *v)
{
    if (!v->leader || v->closing)
        return;
    time_failovers(c, v);
    if (v->applies_in_flight > 0)
        return; /* decide again on the state the pending commands produce */
    if (register_nodes(c, v))
        return;
    if (removals(c, v))
        return;
    keep_voters(c, v);
    if (!index_reports(c, v))
        return;
    /* Observations first: in the history they come before the decisions they cause. */
    node_events(c, v);
    instance_events(c, v);
    c->primed = true;
    run_decisions(c, v);
    leadership_away_from_actives(c, v);
}
