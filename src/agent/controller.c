/* controller.c — what the Raft leader does each heartbeat: register agents (incarnations), admit
 * joining nodes, keep the voter count, carry out removals, and turn the decision function's output
 * into guarded FSM commands. One batch of commands at a time: the next decision is made on the
 * state those commands produced. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/agent.h"
#include "core/decide.h"
#include "core/lease.h"
#include "lib/log.h"
#include "lib/clock.h"
#include "lib/hostport.h"

static const struct raft_server *raft_member(us_agent *a, uint64_t id)
{
    const struct raft_configuration *c = &a->raft.configuration;
    for (unsigned i = 0; i < c->n; i++)
        if (c->servers[i].id == id)
            return &c->servers[i];
    return NULL;
}

static int count_voters(us_agent *a)
{
    int n = 0;
    const struct raft_configuration *c = &a->raft.configuration;
    for (unsigned i = 0; i < c->n; i++)
        n += c->servers[i].role == RAFT_VOTER;
    return n;
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

static void record_event(us_agent *a, us_event e)
{
    e.time_ms = us_wall_ms();
    us_info("event: %s %s%s%s %s -> %s: %s", e.kind, e.service, e.service[0] ? " " : "", e.node,
            e.from, e.to, e.cause);
    us_agent_apply(a, us_cmd_event(&e), NULL, NULL);
}

/* Record an observation as an event in the replicated history. */
static void record(us_agent *a, const char *kind, const char *service, const char *node,
                   const char *from, const char *to, const char *cause)
{
    record_event(a, make_event(kind, service, node, from, to, cause));
}

static int alive_members(us_agent *a)
{
    int n = 0;
    const struct raft_configuration *c = &a->raft.configuration;
    for (unsigned i = 0; i < c->n; i++) {
        us_peer *p = us_agent_peer_by_id(a, c->servers[i].id);
        n += p && us_agent_node_state(a, p) == US_NODE_ALIVE;
    }
    return n;
}

/* 3 voters, 5 once 5 members are alive: one more failure (two) can always be survived. */
static int desired_voters(us_agent *a)
{
    int members = (int)a->raft.configuration.n;
    if (alive_members(a) >= 5)
        return 5;
    return members >= 3 ? 3 : members;
}

/* ---- membership changes (one at a time, as libraft requires) ---- */

typedef struct change_req {
    struct raft_change req;
    us_agent *agent;
    uint64_t id;
    int role;            /* after an add: the role to assign; -1 none */
    us_event done_event; /* recorded once the change succeeded (kind "" = none) */
} change_req;

static void change_done(struct raft_change *req, int status);

/* `done` (may be NULL): the event to record once the change took effect. */
static void assign_role(us_agent *a, uint64_t id, int role, const us_event *done)
{
    change_req *c = calloc(1, sizeof *c);
    c->agent = a;
    c->id = id;
    c->role = -1;
    if (done)
        c->done_event = *done;
    c->req.data = c;
    a->change_in_flight = true;
    int rc = raft_assign(&a->raft, &c->req, id, role, change_done);
    if (rc != 0) {
        us_warn("cannot assign raft role to %llx: %s (configuration change pending at index %llu, "
                "committed %llu, commit index %llu)",
                (unsigned long long)id, raft_strerror(rc),
                (unsigned long long)a->raft.configuration_uncommitted_index,
                (unsigned long long)a->raft.configuration_committed_index,
                (unsigned long long)a->raft.commit_index);
        a->change_in_flight = false;
        free(c);
    }
}

static void change_done(struct raft_change *req, int status)
{
    change_req *c = req->data;
    us_agent *a = c->agent;
    a->change_in_flight = false;
    if (status != 0)
        us_warn("membership change failed: %s", raft_strerror(status));
    else if (c->role >= 0 && a->leader)
        assign_role(a, c->id, c->role, NULL);
    if (status == 0 && c->done_event.kind[0] && a->leader)
        record_event(a, c->done_event);
    free(c);
    us_agent_schedule_reconcile(a);
}

void us_controller_join_request(us_agent *a, const char *name, const char *address)
{
    if (!name || !address || !us_name_valid(name) || a->change_in_flight)
        return;
    struct sockaddr_in sa;
    if (us_sockaddr_parse(address, &sa) != 0)
        return;
    uint64_t id = us_node_id(name);
    if (raft_member(a, id))
        return; /* already in; registration follows from its heartbeats */
    int i = us_state_find_node(&a->fsm.state, name);
    if (i >= 0 && a->fsm.state.nodes[i].left && a->applies_in_flight == 0) {
        /* A removed node may come back: forget that it left. */
        us_agent_apply(
            a, us_cmd_stamp(us_cmd_node_flags(name, false, false, false), us_wall_ms(), NULL), NULL,
            NULL);
    }
    us_peer *p = us_agent_peer(a, name);
    (void)p;
    change_req *c = calloc(1, sizeof *c);
    c->agent = a;
    c->id = id;
    bool voter = count_voters(a) < desired_voters(a) ||
                 (count_voters(a) < 5 && a->raft.configuration.n + 1 >= 5);
    c->role = voter ? RAFT_VOTER : RAFT_STANDBY;
    c->req.data = c;
    a->change_in_flight = true;
    int rc = raft_add(&a->raft, &c->req, id, address, change_done);
    if (rc != 0) {
        us_warn("cannot add %s: %s", name, raft_strerror(rc));
        a->change_in_flight = false;
        free(c);
        return;
    }
    us_info("adding node %s (%s) as %s", name, address, voter ? "voter" : "non-voter");
}

static void remove_done(struct raft_change *req, int status)
{
    change_done(req, status);
}

static void transfer_done(struct raft_transfer *req)
{
    us_agent *a = req->data;
    a->change_in_flight = false;
    free(req);
}

static void transfer_leadership(us_agent *a, uint64_t to, const char *why)
{
    if (a->change_in_flight)
        return;
    struct raft_transfer *t = calloc(1, sizeof *t);
    t->data = a;
    a->change_in_flight = true;
    int rc = raft_transfer(&a->raft, t, to, transfer_done);
    if (rc != 0) {
        a->change_in_flight = false;
        free(t);
        us_debug("leadership transfer not started: %s", raft_strerror(rc));
        return;
    }
    us_info("transferring leadership: %s", why);
}

/* Losing the node that is both leader and active would cost an election on top of the lease:
 * keep leadership on a voter that holds no active role when there is one. */
static void leadership_away_from_actives(us_agent *a, int64_t now)
{
    const us_state *s = &a->fsm.state;
    /* No wait after taking over: the node just promoted is often the leader itself. Not while a
     * configuration change is pending: the next leader would inherit it half-done. */
    if (a->change_in_flight || a->raft.configuration_uncommitted_index != 0 ||
        now < a->next_transfer_ms || !us_state_holds_active(s, a->cfg.name))
        return;
    const struct raft_configuration *c = &a->raft.configuration;
    for (unsigned i = 0; i < c->n; i++) {
        us_peer *p = us_agent_peer_by_id(a, c->servers[i].id);
        int k = p ? us_state_find_node(s, p->name) : -1;
        if (c->servers[i].role != RAFT_VOTER || !p || p == &a->peers[a->self] || k < 0 ||
            s->nodes[k].leaving || us_agent_node_state(a, p) != US_NODE_ALIVE ||
            us_agent_judge_lease(a, p, now) != US_LEASE_VALID || us_state_holds_active(s, p->name))
            continue;
        a->next_transfer_ms = now + 2000; /* retry bound if the target cannot take over */
        char why[US_NAME_MAX + 64];
        snprintf(why, sizeof why, "to %s, which holds no active role", p->name);
        transfer_leadership(a, p->id, why);
        return;
    }
}

/* Carry out `understudy node remove` once the node holds no active role. */
static bool removals(us_agent *a)
{
    const us_state *s = &a->fsm.state;
    for (int i = 0; i < s->n_nodes; i++) {
        const us_node *n = &s->nodes[i];
        if (!n->removing && !n->left)
            continue;
        if (n->left) {
            const struct raft_server *srv = raft_member(a, n->id);
            if (!srv || a->change_in_flight || strcmp(n->name, a->cfg.name) == 0)
                continue;
            change_req *c = calloc(1, sizeof *c);
            c->agent = a;
            c->id = n->id;
            c->role = -1;
            c->req.data = c;
            a->change_in_flight = true;
            if (raft_remove(&a->raft, &c->req, n->id, remove_done) != 0) {
                a->change_in_flight = false;
                free(c);
            } else {
                us_info("removing node %s from the Raft configuration", n->name);
            }
            return true;
        }
        if (us_state_holds_active(s, n->name))
            continue; /* the decision function is handing its roles over */
        if (strcmp(n->name, a->cfg.name) == 0) {
            /* A leader must not remove itself: hand leadership over, the next one removes us. */
            transfer_leadership(a, 0, "this node is being removed");
            continue;
        }
        if (a->applies_in_flight == 0) {
            us_info("node %s holds no active role any more: marking it left", n->name);
            us_agent_apply(
                a, us_cmd_stamp(us_cmd_node_flags(n->name, true, false, true), us_wall_ms(), NULL),
                NULL, NULL);
            return true;
        }
    }
    return false;
}

/* An alive member that does not vote and may (not leaving or removed). */
static us_peer *spare_voter(us_agent *a)
{
    const us_state *s = &a->fsm.state;
    const struct raft_configuration *c = &a->raft.configuration;
    for (unsigned i = 0; i < c->n; i++) {
        if (c->servers[i].role == RAFT_VOTER)
            continue;
        us_peer *p = us_agent_peer_by_id(a, c->servers[i].id);
        int k = p ? us_state_find_node(s, p->name) : -1;
        if (p && us_agent_node_state(a, p) == US_NODE_ALIVE &&
            (k < 0 || (!s->nodes[k].leaving && !s->nodes[k].removing && !s->nodes[k].left)))
            return p;
    }
    return NULL;
}

/* Autopilot: a voter dead longer than the grace period gives its vote to an alive member, so the
 * cluster can again survive one more failure. Demote first (the dead vote no longer counts),
 * then keep_voters promotes. */
static bool replace_dead_voter(us_agent *a, int64_t now)
{
    int grace = a->cfg.autopilot_grace_ms;
    us_peer *spare = spare_voter(a);
    /* Without a replacement, fewer voters still help when they restore a spare failure: 3 alive
     * of 5 voters survive none more, 3 alive of 3 survive one. */
    if (a->change_in_flight || now - a->leader_since_ms < grace ||
        (!spare && count_voters(a) <= desired_voters(a)))
        return false;
    const struct raft_configuration *c = &a->raft.configuration;
    for (unsigned i = 0; i < c->n; i++) {
        us_peer *p = us_agent_peer_by_id(a, c->servers[i].id);
        if (c->servers[i].role != RAFT_VOTER || !p || p == &a->peers[a->self] ||
            us_agent_node_state(a, p) != US_NODE_DEAD)
            continue;
        int64_t silent = p->last_seen_ms < 0 ? now - a->leader_since_ms : now - p->last_seen_ms;
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
                     p->name, (long long)silent, grace, desired_voters(a));
        us_event e = make_event("voter", NULL, p->name, "voter", "non-voter", why);
        assign_role(a, c->servers[i].id, RAFT_STANDBY, &e);
        return true;
    }
    return false;
}

static void keep_voters(us_agent *a, int64_t now)
{
    if (replace_dead_voter(a, now))
        return;
    if (a->change_in_flight || count_voters(a) >= desired_voters(a))
        return;
    us_peer *p = spare_voter(a);
    if (p) {
        char why[US_REASON_MAX];
        snprintf(why, sizeof why, "autopilot: keeping %d voters", desired_voters(a));
        us_event e = make_event("voter", NULL, p->name, "non-voter", "voter", why);
        assign_role(a, p->id, RAFT_VOTER, &e);
    }
}

/* ---- events the leader observes (liveness, health, standby restarts) ---- */

void us_controller_became_leader(us_agent *a)
{
    a->ctl_primed = false;
    a->n_ctl_seen = 0;
    a->n_ctl_timing = 0;
    a->leader_since_ms = us_now_ms();
}

static struct us_ctl_seen *seen(us_agent *a, const char *service, const char *node, bool *fresh)
{
    *fresh = false;
    for (int i = 0; i < a->n_ctl_seen; i++)
        if (strcmp(a->ctl_seen[i].service, service) == 0 && strcmp(a->ctl_seen[i].node, node) == 0)
            return &a->ctl_seen[i];
    if (a->n_ctl_seen == (int)(sizeof a->ctl_seen / sizeof a->ctl_seen[0])) {
        /* Pairs of renamed services and removed nodes piled up: start over (silently). */
        a->n_ctl_seen = 0;
        *fresh = true;
    }
    struct us_ctl_seen *x = &a->ctl_seen[a->n_ctl_seen++];
    memset(x, 0, sizeof *x);
    us_strlcpy(x->service, service, sizeof x->service);
    us_strlcpy(x->node, node, sizeof x->node);
    *fresh = true;
    return x;
}

static void node_events(us_agent *a, int64_t now)
{
    const us_state *s = &a->fsm.state;
    for (int i = 0; i < a->n_peers; i++) {
        us_peer *p = &a->peers[i];
        us_node_state st = us_agent_node_state(a, p);
        us_node_state was = a->ctl_node[i];
        a->ctl_node[i] = st;
        if (!a->ctl_primed || st == was || st == US_NODE_LEFT || was == US_NODE_LEFT ||
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
            int64_t age = now - p->last_seen_ms;
            snprintf(why, sizeof why, "%s missed %lld heartbeats (last seen %lld ms ago)", p->name,
                     (long long)(age / a->cfg.timing.heartbeat_ms), (long long)age);
        }
        record(a, "node", NULL, p->name, us_node_state_name(was), us_node_state_name(st), why);
    }
}

static us_inst_obs report_of(us_agent *a, us_peer *p, const us_assignment *as);

static void instance_events(us_agent *a)
{
    const us_state *s = &a->fsm.state;
    for (int k = 0; k < s->services.n; k++) {
        const us_assignment *as = &s->asg[k];
        const us_service_def *d = &s->services.svc[k];
        for (int n = 0; n < s->n_nodes; n++) {
            us_peer *p = us_agent_peer(a, s->nodes[n].name);
            if (!p || s->nodes[n].left)
                continue;
            us_inst_obs o = report_of(a, p, as);
            us_report r;
            us_agent_report(a, p->name, as->service, &r);
            int restarts = r.restarts;
            const char *restart_cause = r.restart_cause;
            bool fresh;
            struct us_ctl_seen *x = seen(a, as->service, p->name, &fresh);
            if (!x)
                return;
            us_health was = x->health;
            int restarts_was = x->restarts;
            x->health = o.health;
            x->restarts = restarts;
            if (!a->ctl_primed || fresh)
                continue;
            /* To `unknown` only means the checks stopped with the instance: role events say why. */
            if (o.health != was && o.health != US_HEALTH_UNKNOWN) {
                char why[US_REASON_MAX];
                if (o.health == US_HEALTH_HEALTHY)
                    snprintf(why, sizeof why, "checks passed %d time%s in a row", d->rise,
                             d->rise == 1 ? "" : "s");
                else
                    snprintf(why, sizeof why, "%s", o.cause[0] ? o.cause : "checks failing");
                record(a, "health", as->service, p->name, us_health_name(was),
                       us_health_name(o.health), why);
            }
            if (restarts > restarts_was)
                record(a, "restart", as->service, p->name, "exited", "restarted",
                       restart_cause[0] ? restart_cause : "standby process exited");
        }
    }
}

/* Record each agent's incarnation and addresses in the replicated node list. */
static bool register_nodes(us_agent *a)
{
    const us_state *s = &a->fsm.state;
    for (int i = 0; i < a->n_peers; i++) {
        us_peer *p = &a->peers[i];
        const struct raft_server *srv = raft_member(a, p->id);
        if (!srv || p->inc == 0 || !p->api[0] || !p->address[0])
            continue;
        int k = us_state_find_node(s, p->name);
        bool voter = srv->role == RAFT_VOTER;
        if (k >= 0 && s->nodes[k].incarnation == p->inc && s->nodes[k].voter == voter &&
            strcmp(s->nodes[k].address, p->address) == 0 && strcmp(s->nodes[k].api, p->api) == 0)
            continue;
        if (k >= 0 && s->nodes[k].left && s->nodes[k].incarnation == p->inc)
            continue;
        us_node n = {0};
        us_strlcpy(n.name, p->name, sizeof n.name);
        n.id = p->id;
        us_strlcpy(n.address, p->address, sizeof n.address);
        us_strlcpy(n.api, p->api, sizeof n.api);
        n.incarnation = p->inc;
        n.voter = voter;
        if (k >= 0 && s->nodes[k].incarnation == p->inc) {
            /* Only the voter flag or an address changed: keep maintenance flags. */
            n.leaving = s->nodes[k].leaving;
            n.removing = s->nodes[k].removing;
        }
        us_agent_apply(a, us_cmd_stamp(us_cmd_node_up(&n), us_wall_ms(), NULL), NULL, NULL);
        return true;
    }
    return false;
}

static us_inst_obs report_of(us_agent *a, us_peer *p, const us_assignment *as)
{
    us_report r;
    us_agent_report(a, p->name, as->service, &r);
    us_inst_obs o = r.obs;
    /* A guardian announcement for exactly this assignment overrides a stale report. */
    if (strcmp(as->active, p->name) == 0) {
        for (int i = 0; i < p->n_fenced; i++)
            if (strcmp(p->fenced_service[i], as->service) == 0 && p->fenced_epoch[i] == as->epoch &&
                p->fenced_inc[i] == as->active_inc) {
                o.state = US_INST_FENCED;
                o.epoch = as->epoch;
                o.exit_status = 137;
            }
    }
    return o;
}

/* ---- failover timing (metrics.failover) ---- */

/* Our decision `next` takes the role from cur->active for a failure or loss: start timing, unless
 * an earlier decision for the same release (not committed, made again) already did. */
static void time_release(us_agent *a, const us_assignment *cur, const us_assignment *next)
{
    bool released =
        cur->active[0] && (strcmp(cur->active, next->active) != 0 || cur->epoch != next->epoch);
    if (!released || us_release_cause(next->release) == US_CAUSE_SWITCHOVER)
        return;
    struct us_ctl_timing *t = NULL;
    for (int i = 0; i < a->n_ctl_timing && !t; i++)
        if (strcmp(a->ctl_timing[i].service, cur->service) == 0)
            t = &a->ctl_timing[i];
    if (t && strcmp(t->from, cur->active) == 0 && t->epoch == cur->epoch)
        return;
    if (!t) {
        if (a->n_ctl_timing == US_MAX_SERVICES)
            return; /* more timings than services: stale ones are dropped by time_failovers */
        t = &a->ctl_timing[a->n_ctl_timing++];
    }
    us_strlcpy(t->service, cur->service, sizeof t->service);
    us_strlcpy(t->from, cur->active, sizeof t->from);
    t->epoch = cur->epoch;
    t->t0_ns = us_now_ns();
}

/* Finish the timings whose service now has an active elsewhere that reports itself ACTIVE. The
 * role given back to the released node is a restart in place, not a failover: not timed. */
static void time_failovers(us_agent *a)
{
    const us_state *s = &a->fsm.state;
    int64_t now = us_now_ns();
    for (int i = 0; i < a->n_ctl_timing;) {
        struct us_ctl_timing *t = &a->ctl_timing[i];
        int k = us_state_find_service(s, t->service);
        const us_assignment *as = k >= 0 ? &s->asg[k] : NULL;
        us_peer *p = as && as->active[0] ? us_agent_peer(a, as->active) : NULL;
        bool done = !as || now - t->t0_ns > 3600 * 1000000000LL;
        if (!done && p && as->epoch > t->epoch) {
            us_inst_obs o = report_of(a, p, as);
            if (strcmp(as->active, t->from) == 0) {
                done = true;
            } else if (o.state == US_INST_ACTIVE && o.epoch == as->epoch) {
                double secs = (double)(now - t->t0_ns) / 1e9;
                us_histogram_observe(&a->metrics.failover, secs);
                us_info("%s: failover from %s to %s took %.3f s (decision to active)", t->service,
                        t->from, as->active, secs);
                done = true;
            }
        }
        if (done)
            *t = a->ctl_timing[--a->n_ctl_timing];
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

static void wake_cb(uv_timer_t *t)
{
    us_agent_schedule_reconcile(t->data);
}

static void run_decisions(us_agent *a, int64_t now)
{
    static us_decide_input in; /* large; the loop is single-threaded */
    static us_decide_output out;
    const us_state *s = &a->fsm.state;
    memset(&in, 0, sizeof in);
    in.has_quorum = us_agent_fresh_quorum(a, now);
    in.now_ms = us_wall_ms();
    us_strlcpy(in.leader, a->cfg.name, sizeof in.leader);
    in.n_nodes = s->n_nodes;
    for (int n = 0; n < s->n_nodes; n++) {
        in.nodes[n] = s->nodes[n];
        us_peer *p = us_agent_peer(a, s->nodes[n].name);
        us_node_obs *o = &in.node_obs[n];
        if (!p) {
            o->state = s->nodes[n].left ? US_NODE_LEFT : US_NODE_DEAD;
            o->lease = US_LEASE_UNKNOWN;
            o->last_seen_ms = -1;
            continue;
        }
        o->state = us_agent_node_state(a, p);
        o->lease = us_agent_judge_lease(a, p, now);
        o->last_seen_ms = p == &a->peers[a->self] ? 0
                          : p->last_seen_ms < 0   ? -1
                                                  : now - p->last_seen_ms;
    }
    in.n_services = s->services.n;
    for (int k = 0; k < s->services.n; k++) {
        in.defs[k] = s->services.svc[k];
        in.asg[k] = s->asg[k];
        for (int n = 0; n < s->n_nodes; n++) {
            us_peer *p = us_agent_peer(a, s->nodes[n].name);
            if (p)
                in.inst[k][n] = report_of(a, p, &s->asg[k]);
        }
    }
    us_decide(&in, &out);
    for (int i = 0; i < out.n; i++) {
        const us_assignment *next = &out.d[i].next;
        time_release(a, &s->asg[out.d[i].service], next);
        us_info("%s: %s [active %s, epoch %llu]", next->service, next->reason,
                next->active[0] ? next->active : "none", (unsigned long long)next->epoch);
        us_agent_apply(a, us_cmd_stamp(us_cmd_assign(next), in.now_ms, NULL), decided_cb, NULL);
    }
    if (out.wake_ms > in.now_ms) /* a backoff or cooldown ends: decide again then */
        uv_timer_start(&a->wake_timer, wake_cb, (uint64_t)(out.wake_ms - in.now_ms), 0);
}

void us_controller_tick(us_agent *a)
{
    if (!a->leader || a->stopping == 2)
        return;
    int64_t now = us_now_ms();
    time_failovers(a);
    if (a->applies_in_flight > 0)
        return; /* decide again on the state the pending commands produce */
    if (register_nodes(a))
        return;
    if (removals(a))
        return;
    keep_voters(a, now);
    /* Observations first: in the history they come before the decisions they cause. */
    node_events(a, now);
    instance_events(a);
    a->ctl_primed = true;
    run_decisions(a, now);
    leadership_away_from_actives(a, now);
}
