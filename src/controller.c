/* controller.c — what the Raft leader does each heartbeat: register agents (incarnations), admit
 * joining nodes, keep the voter count, carry out removals, and turn the decision function's output
 * into guarded FSM commands. One batch of commands at a time: the next decision is made on the
 * state those commands produced. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent.h"
#include "decide.h"
#include "lease.h"
#include "log.h"

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

/* 3 voters, 5 once there are 5 members: one more failure can always be survived. */
static int desired_voters(us_agent *a)
{
    int members = (int)a->raft.configuration.n;
    return members >= 5 ? 5 : members >= 3 ? 3 : members;
}

/* ---- membership changes (one at a time, as libraft requires) ---- */

typedef struct change_req {
    struct raft_change req;
    us_agent *agent;
    uint64_t id;
    int role; /* after an add: the role to assign; -1 none */
} change_req;

static void change_done(struct raft_change *req, int status);

static void assign_role(us_agent *a, uint64_t id, int role)
{
    change_req *c = calloc(1, sizeof *c);
    c->agent = a;
    c->id = id;
    c->role = -1;
    c->req.data = c;
    a->change_in_flight = true;
    int rc = raft_assign(&a->raft, &c->req, id, role, change_done);
    if (rc != 0) {
        us_warn("cannot assign raft role to %llx: %s", (unsigned long long)id, raft_strerror(rc));
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
        assign_role(a, c->id, c->role);
    free(c);
    us_agent_schedule_reconcile(a);
}

void us_controller_join_request(us_agent *a, const json_t *msg)
{
    const char *name = json_string_value(json_object_get(msg, "name"));
    const char *address = json_string_value(json_object_get(msg, "address"));
    const char *api = json_string_value(json_object_get(msg, "api"));
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
        us_agent_apply(a, us_cmd_node_flags(name, false, false, false), NULL, NULL);
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
    (void)api;
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
    /* No wait after taking over: the node just promoted is often the leader itself. */
    if (a->change_in_flight || now < a->next_transfer_ms || !us_state_holds_active(s, a->cfg.name))
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
            us_agent_apply(a, us_cmd_node_flags(n->name, true, false, true), NULL, NULL);
            return true;
        }
    }
    return false;
}

static void keep_voters(us_agent *a)
{
    if (a->change_in_flight || count_voters(a) >= desired_voters(a))
        return;
    const struct raft_configuration *c = &a->raft.configuration;
    for (unsigned i = 0; i < c->n; i++) {
        if (c->servers[i].role == RAFT_VOTER)
            continue;
        us_peer *p = us_agent_peer_by_id(a, c->servers[i].id);
        if (p && us_agent_node_state(a, p) == US_NODE_ALIVE) {
            us_info("promoting %s to voter", p->name);
            assign_role(a, c->servers[i].id, RAFT_VOTER);
            return;
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
        us_agent_apply(a, us_cmd_node_up(&n), NULL, NULL);
        return true;
    }
    return false;
}

static us_inst_obs report_of(us_agent *a, us_peer *p, const us_assignment *as)
{
    us_inst_obs o = {0};
    if (p == &a->peers[a->self]) {
        const us_instance *in = us_instance_of(a, as->service);
        if (in)
            o = in->report;
    } else {
        for (int i = 0; i < p->n_reports; i++)
            if (strcmp(p->reports[i].service, as->service) == 0)
                o = p->reports[i].obs;
    }
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

static void decided_cb(void *data, int status, int result)
{
    (void)data;
    (void)status;
    (void)result;
}

static void run_decisions(us_agent *a, int64_t now)
{
    static us_decide_input in; /* large; the loop is single-threaded */
    static us_decide_output out;
    const us_state *s = &a->fsm.state;
    memset(&in, 0, sizeof in);
    in.has_quorum = us_agent_fresh_quorum(a, now);
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
        us_info("%s: %s [active %s, epoch %llu]", next->service, next->reason,
                next->active[0] ? next->active : "none", (unsigned long long)next->epoch);
        us_agent_apply(a, us_cmd_assign(next), decided_cb, NULL);
    }
}

void us_controller_tick(us_agent *a)
{
    if (!a->leader || a->stopping == 2)
        return;
    int64_t now = us_now_ms();
    if (a->applies_in_flight > 0)
        return; /* decide again on the state the pending commands produce */
    if (register_nodes(a))
        return;
    if (removals(a))
        return;
    keep_voters(a);
    run_decisions(a, now);
    leadership_away_from_actives(a, now);
}
