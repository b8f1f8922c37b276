/* test_controller.c — the leader's controller (controller.h) driven deterministically, in the
 * spirit of libraft's raft/fixture.h: fake time and fake peers in a hand-built view, a replicated
 * state that changes only when the test commits what the controller proposed, and membership
 * calls that complete only when the test says so.
 *
 * Checked: a dead active's node leads to a proposal that releases the role for the right cause;
 * a join request leads to an add, then a role assignment (a voter when the cluster grows to five);
 * nothing is proposed while proposals or membership changes are in flight; events are recorded
 * only when something changed.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/controller.h"
#include "core/fsm.h"

/* ---- the fixture ---- */

#define MAX_CALLS 64

typedef struct proposal {
    json_t *cmd;
    us_propose_done done;
    void *arg;
} proposal;

typedef struct change_call {
    char kind[12]; /* "add", "assign", "remove", "transfer" */
    uint64_t id;
    char address[US_ADDR_MAX];
    us_member_role role;
    us_change_done done;
    void *arg;
    bool completed;
} change_call;

static struct {
    us_node_config cfg;
    us_controller ctl;
    us_cluster_view view;
    us_state *state;
    int64_t now_ms, wall_ms;            /* fake clocks */
    us_lease_state lease[US_MAX_NODES]; /* what judge_lease says, by view node index */
    proposal props[MAX_CALLS];
    int n_props;
    change_call changes[MAX_CALLS];
    int n_changes;
    int reconciles, wakes, failovers;
    us_report reports[US_MAX_NODES][US_MAX_SERVICES]; /* by view node index */
} F;

static int propose_cb(void *data, json_t *cmd, us_propose_done done, void *arg)
{
    (void)data;
    assert_true(F.n_props < MAX_CALLS);
    F.props[F.n_props++] = (proposal){cmd, done, arg};
    return 0;
}

static change_call *new_change(const char *kind, uint64_t id, us_change_done done, void *arg)
{
    assert_true(F.n_changes < MAX_CALLS);
    change_call *c = &F.changes[F.n_changes++];
    memset(c, 0, sizeof *c);
    us_strlcpy(c->kind, kind, sizeof c->kind);
    c->id = id;
    c->done = done;
    c->arg = arg;
    return c;
}

static int add_cb(void *data, uint64_t id, const char *address, us_change_done done, void *arg)
{
    (void)data;
    us_strlcpy(new_change("add", id, done, arg)->address, address, US_ADDR_MAX);
    return 0;
}

static int assign_cb(void *data, uint64_t id, us_member_role role, us_change_done done, void *arg)
{
    (void)data;
    new_change("assign", id, done, arg)->role = role;
    return 0;
}

static int remove_cb(void *data, uint64_t id, us_change_done done, void *arg)
{
    (void)data;
    new_change("remove", id, done, arg);
    return 0;
}

static int transfer_cb(void *data, uint64_t to, us_change_done done, void *arg)
{
    (void)data;
    new_change("transfer", to, done, arg);
    return 0;
}

static const char *strerror_cb(int rc)
{
    (void)rc;
    return "fake error";
}

static us_lease_state judge_cb(void *data, const char *node, int64_t now_ms, bool *revoked)
{
    (void)data;
    (void)now_ms;
    if (revoked)
        *revoked = false;
    for (int i = 0; i < F.view.n_nodes; i++)
        if (strcmp(F.view.nodes[i].name, node) == 0)
            return F.lease[i];
    return US_LEASE_UNKNOWN;
}

static bool is_leader_cb(void *data)
{
    (void)data;
    return F.view.leader;
}

static void reconcile_cb(void *data)
{
    (void)data;
    F.reconciles++;
}

static void wake_cb(void *data, int64_t delay_ms)
{
    (void)data;
    (void)delay_ms;
    F.wakes++;
}

static void failover_cb(void *data, double secs)
{
    (void)data;
    (void)secs;
    F.failovers++;
}

static int64_t wall_cb(void *data)
{
    (void)data;
    return F.wall_ms;
}

static void drop_proposals(void)
{
    for (int i = 0; i < F.n_props; i++)
        json_decref(F.props[i].cmd);
    F.n_props = 0;
}

static int teardown(void **unused)
{
    (void)unused;
    drop_proposals();
    us_controller_free(&F.ctl);
    if (F.state)
        us_state_free(F.state);
    free(F.state);
    F.state = NULL;
    return 0;
}

static int setup(void **unused)
{
    (void)unused;
    memset(&F, 0, sizeof F);
    F.state = calloc(1, sizeof *F.state);
    assert_non_null(F.state);
    us_strlcpy(F.cfg.name, "n3", sizeof F.cfg.name); /* the leader: not the first choice */
    assert_int_equal(us_timing_profile("default", &F.cfg.timing), 0);
    F.cfg.autopilot_grace_ms = 10000;
    F.now_ms = 1000000;
    F.wall_ms = 1700000000000LL;
    us_controller_init(&F.ctl, &(us_controller_env){
                                   .cfg = &F.cfg,
                                   .propose = propose_cb,
                                   .add = add_cb,
                                   .assign = assign_cb,
                                   .remove = remove_cb,
                                   .transfer = transfer_cb,
                                   .strerror = strerror_cb,
                                   .judge_lease = judge_cb,
                                   .is_leader = is_leader_cb,
                                   .schedule_reconcile = reconcile_cb,
                                   .wake = wake_cb,
                                   .failover = failover_cb,
                                   .wall_ms = wall_cb,
                               });
    us_controller_became_leader(&F.ctl, F.now_ms);
    F.view.leader = true;
    F.view.has_quorum = true;
    F.view.state = F.state;
    return 0;
}

/* A fake peer, alive, heard from just now, a voter unless `voter` is false. */
static us_view_node *add_node(const char *name, bool voter)
{
    us_cluster_view *v = &F.view;
    int i = v->n_nodes++;
    us_view_node *n = &v->nodes[i];
    memset(n, 0, sizeof *n);
    us_strlcpy(n->name, name, sizeof n->name);
    n->id = us_node_id(name);
    snprintf(n->address, sizeof n->address, "127.0.0.1:72%02d", i);
    snprintf(n->api, sizeof n->api, "127.0.0.1:73%02d", i);
    n->self = strcmp(name, F.cfg.name) == 0;
    n->inc = 100 + (uint64_t)i;
    n->state = US_NODE_ALIVE;
    n->last_seen_ms = F.now_ms;
    n->reports = F.reports[i];
    F.lease[i] = US_LEASE_VALID;
    v->members[v->n_members++] =
        (us_view_member){n->id, voter ? US_MEMBER_VOTER : US_MEMBER_STANDBY};
    return n;
}

static us_view_node *node(const char *name)
{
    for (int i = 0; i < F.view.n_nodes; i++)
        if (strcmp(F.view.nodes[i].name, name) == 0)
            return &F.view.nodes[i];
    fail_msg("no node %s", name);
    return NULL;
}

/* What `name` reports about `service`. */
static us_report *report(const char *name, const char *service)
{
    us_view_node *n = node(name);
    us_report *r = &F.reports[n - F.view.nodes][0];
    for (int i = 0; i < n->n_reports; i++)
        if (strcmp(r[i].service, service) == 0)
            return &r[i];
    us_report *x = &r[n->n_reports++];
    memset(x, 0, sizeof *x);
    us_strlcpy(x->service, service, sizeof x->service);
    x->check_ms = -1;
    return x;
}

static void add_service(const char *name)
{
    us_service_set set = {0};
    assert_int_equal(us_service_set_reserve(&set, F.state->services.n + 1), 0);
    for (int i = 0; i < F.state->services.n; i++)
        set.svc[set.n++] = F.state->services.svc[i];
    us_service_def *d = &set.svc[set.n++];
    memset(d, 0, sizeof *d);
    us_strlcpy(d->name, name, sizeof d->name);
    snprintf(d->run, sizeof d->run, "exec sleep 1000");
    d->standby = US_STANDBY_COLD;
    d->standbys = 1;
    d->rise = 2;
    d->fall = 3;
    d->hook_timeout_ms = 10000;
    d->stop_timeout_ms = 5000;
    json_t *cmd = us_cmd_services(&set);
    us_service_set_free(&set);
    assert_int_equal(us_state_apply(F.state, cmd), 0);
    json_decref(cmd);
}

static void tick(void)
{
    F.view.now_ms = F.now_ms;
    F.view.now_ns = F.now_ms * 1000000;
    F.view.wall_ms = F.wall_ms;
    F.view.applies_in_flight = F.n_props;
    us_controller_tick(&F.ctl, &F.view);
}

static const char *op_of(int i)
{
    return us_json_str(F.props[i].cmd, "op");
}

static int count_ops(const char *op)
{
    int n = 0;
    for (int i = 0; i < F.n_props; i++)
        n += strcmp(op_of(i), op) == 0;
    return n;
}

/* Raft commits what was proposed, in order. */
static void commit(void)
{
    for (int i = 0; i < F.n_props; i++) {
        int rc = us_state_apply(F.state, F.props[i].cmd);
        if (F.props[i].done)
            F.props[i].done(F.props[i].arg, 0, rc);
    }
    drop_proposals();
}

/* Tick and commit until the controller has nothing more to propose. */
static void settle(void)
{
    for (int round = 0; round < 20; round++) {
        tick();
        if (F.n_props == 0)
            return;
        commit();
    }
    fail_msg("the controller keeps proposing");
}

static void complete(change_call *c, int status)
{
    assert_false(c->completed);
    c->completed = true;
    c->done(c->arg, status);
}

static void advance(int64_t ms)
{
    F.now_ms += ms;
    F.wall_ms += ms;
}

/* Three registered voters n1, n2, n3 (us, the leader). */
static void three_nodes(void)
{
    add_node("n1", true);
    add_node("n2", true);
    add_node("n3", true);
    settle();
    assert_int_equal(F.state->n_nodes, 3);
}

/* ---- tests ---- */

static void test_registers_nodes(void **unused)
{
    (void)unused;
    add_node("n1", true);
    add_node("n2", true);
    tick();
    /* One registration per tick, then nothing until it is applied. */
    assert_int_equal(F.n_props, 1);
    assert_string_equal(op_of(0), "node_up");
    tick();
    assert_int_equal(F.n_props, 1);
    commit();
    settle();
    assert_int_equal(F.state->n_nodes, 2);
    int k = us_state_find_node(F.state, "n2");
    assert_true(k >= 0);
    assert_int_equal(F.state->nodes[k].incarnation, node("n2")->inc);
    assert_true(F.state->nodes[k].voter);
    assert_int_equal(F.n_changes, 0);
}

/* Place `svc` and make its active report ACTIVE; returns the active's name. */
static const char *place(const char *svc)
{
    add_service(svc);
    for (int i = 0; i < F.view.n_nodes; i++)
        report(F.view.nodes[i].name, svc)->obs.state = US_INST_NONE;
    settle();
    int k = us_state_find_service(F.state, svc);
    assert_true(k >= 0);
    const us_assignment *as = &F.state->asg[k];
    assert_true(as->active[0]);
    us_report *r = report(as->active, svc);
    r->obs.state = US_INST_ACTIVE;
    r->obs.epoch = as->epoch;
    for (int i = 0; i < as->n_standbys; i++)
        report(as->standbys[i], svc)->obs.state = US_INST_STANDBY;
    settle();
    return F.state->asg[k].active;
}

/* A planned restart (SIGUSR2): the holder's agent comes back as a new incarnation that adopted
 * the old one's instances. The leader registers it with "adopts": the role stays, same epoch,
 * now given to the new incarnation; nothing is released. A restart without adoption (kill -9)
 * is released as before ("agent on X restarted"). */
static void test_adopting_restart_keeps_the_role(void **unused)
{
    (void)unused;
    three_nodes();
    const char *a = place("web");
    char holder[US_NAME_MAX];
    us_strlcpy(holder, a, sizeof holder);
    int k = us_state_find_service(F.state, "web");
    uint64_t epoch = F.state->asg[k].epoch, old = node(holder)->inc;
    assert_true(F.state->asg[k].active_inc == old);

    us_view_node *n = node(holder);
    n->inc = old + 50;
    n->adopts = old;
    report(holder, "web")->obs.epoch = epoch; /* still reports ACTIVE under the same epoch */
    settle();
    assert_string_equal(F.state->asg[k].active, holder);
    assert_true(F.state->asg[k].epoch == epoch);
    assert_true(F.state->asg[k].active_inc == old + 50);
    assert_true(F.state->nodes[us_state_find_node(F.state, holder)].incarnation == old + 50);

    /* kill -9 and a plain restart: no adoption claim, the role is released. */
    n->inc = old + 60;
    n->adopts = 0;
    settle();
    assert_true(F.state->asg[k].epoch > epoch);
    assert_int_equal(F.state->asg[k].release, US_RELEASE_AGENT);
    assert_non_null(strstr(F.state->asg[k].reason, "restarted"));
}

static void test_dead_active_released_for_lease(void **unused)
{
    (void)unused;
    three_nodes();
    char active[US_NAME_MAX];
    us_strlcpy(active, place("db"), sizeof active);
    int k = us_state_find_service(F.state, "db");
    us_assignment before = F.state->asg[k];
    assert_string_equal(active, "n1"); /* the first eligible node, a peer */

    /* The active's node goes silent: dead, and its lease expires. */
    advance(20000);
    for (int i = 0; i < F.view.n_nodes; i++)
        if (!F.view.nodes[i].self)
            F.view.nodes[i].last_seen_ms = F.now_ms;
    us_view_node *x = node(active);
    x->state = US_NODE_DEAD;
    x->last_seen_ms = F.now_ms - 10000;
    F.lease[x - F.view.nodes] = US_LEASE_EXPIRED;
    tick();

    /* The observation first, then the decision. */
    assert_int_equal(count_ops("event"), 1);
    assert_string_equal(op_of(0), "event");
    assert_int_equal(count_ops("assign"), 1);
    int a = -1;
    for (int i = 0; i < F.n_props; i++)
        if (strcmp(op_of(i), "assign") == 0)
            a = i;
    assert_true(a > 0);
    commit();
    const us_assignment *after = &F.state->asg[k];
    assert_true(strcmp(after->active, active) != 0 || after->epoch != before.epoch);
    assert_int_equal(after->release, US_RELEASE_LEASE);
    assert_int_equal(us_release_cause(after->release), US_CAUSE_LEASE);
    char want[US_REASON_MAX];
    snprintf(want, sizeof want, "lease of %s expired", active);
    assert_non_null(strstr(after->reason, want));

    /* The event names the node and says why. */
    const us_event *e = us_state_event(F.state, F.state->event_seq);
    assert_non_null(e);
    for (uint64_t q = us_state_first_event(F.state); q <= F.state->event_seq; q++) {
        const us_event *ev = us_state_event(F.state, q);
        if (ev && strcmp(ev->kind, "node") == 0)
            e = ev;
    }
    assert_string_equal(e->kind, "node");
    assert_string_equal(e->node, active);
    assert_string_equal(e->from, "alive");
    assert_string_equal(e->to, "dead");
    assert_non_null(strstr(e->cause, "missed"));
    assert_int_equal(e->time_ms, F.wall_ms);

    /* Failover timing: done once the new active reports ACTIVE under the new epoch. */
    assert_int_equal(F.failovers, 0);
    if (after->active[0]) {
        us_report *r = report(after->active, "db");
        r->obs.state = US_INST_ACTIVE;
        r->obs.epoch = after->epoch;
        advance(300);
        tick();
        assert_int_equal(F.failovers, 1);
        drop_proposals();
    }
}

/* The decision function reads each node's report about each service through pointers
 * (inst[service * n_nodes + node], decide.h): with three services over three nodes, a guardian's
 * announcement that it fenced the holder of one of them overrides that holder's stale ACTIVE report
 * for that service only, which is released as fenced (its lease still valid); the others stay. */
static void test_guardian_fenced_active_released(void **unused)
{
    (void)unused;
    three_nodes();
    const char *svc[3] = {"a", "b", "c"};
    char holder[3][US_NAME_MAX];
    uint64_t epoch[3];
    for (int i = 0; i < 3; i++)
        us_strlcpy(holder[i], place(svc[i]), sizeof holder[i]);
    for (int i = 0; i < 3; i++)
        epoch[i] = F.state->asg[us_state_find_service(F.state, svc[i])].epoch;
    settle();
    assert_int_equal(F.n_props, 0);

    int kb = us_state_find_service(F.state, "b");
    static char fenced_service[1][US_NAME_MAX] = {"b"};
    static uint64_t fenced_epoch[1], fenced_inc[1];
    fenced_epoch[0] = epoch[1];
    fenced_inc[0] = F.state->asg[kb].active_inc;
    us_view_node *h = node(holder[1]);
    h->n_fenced = 1;
    h->fenced_service = fenced_service;
    h->fenced_epoch = fenced_epoch;
    h->fenced_inc = fenced_inc;
    tick();
    assert_int_equal(count_ops("assign"), 1);
    commit();
    assert_int_equal(F.state->asg[kb].release, US_RELEASE_FENCED);
    assert_true(F.state->asg[kb].epoch > epoch[1]);
    assert_string_not_equal(F.state->asg[kb].active, holder[1]);
    for (int i = 0; i < 3; i += 2) {
        const us_assignment *as = &F.state->asg[us_state_find_service(F.state, svc[i])];
        assert_string_equal(as->active, holder[i]);
        assert_true(as->epoch == epoch[i]);
    }
    h->n_fenced = 0;
    drop_proposals();
}

static int count_changes(const char *kind)
{
    int n = 0;
    for (int i = 0; i < F.n_changes; i++)
        n += strcmp(F.changes[i].kind, kind) == 0;
    return n;
}

/* The leader (n3) holds the active role: leadership goes to a voter that holds none and has
 * applied all we have; one still catching up (it just came back) is skipped, and a transfer that
 * fails (we are still leader) is tried again after three heartbeats, not after 2 s (issue 11). */
static void test_leadership_moves_off_the_active_to_a_caught_up_voter(void **unused)
{
    (void)unused;
    three_nodes();
    F.lease[node("n1") - F.view.nodes] = US_LEASE_EXPIRED; /* so that n3, the leader, gets it */
    F.lease[node("n2") - F.view.nodes] = US_LEASE_EXPIRED;
    assert_string_equal(place("web"), "n3");
    F.lease[node("n1") - F.view.nodes] = US_LEASE_VALID;
    F.lease[node("n2") - F.view.nodes] = US_LEASE_VALID;
    int before = count_changes("transfer");
    uint64_t v = F.state->version;
    node("n3")->version = v;
    node("n1")->version = v - 1; /* still catching up */
    node("n2")->version = v - 1;
    advance(5000);
    tick();
    drop_proposals();
    assert_int_equal(count_changes("transfer"), before);
    node("n2")->version = v; /* caught up */
    advance(100);
    tick();
    drop_proposals();
    assert_int_equal(count_changes("transfer"), before + 1);
    change_call *t = &F.changes[F.n_changes - 1];
    assert_string_equal(t->kind, "transfer");
    assert_int_equal(t->id, node("n2")->id);
    /* It fails: n2 did not take over in time, we are still the leader. */
    advance(1000);
    complete(t, 0);
    advance(3 * F.cfg.timing.heartbeat_ms - 1);
    tick(); /* notes the failure: the retry is three heartbeats from now */
    drop_proposals();
    assert_int_equal(count_changes("transfer"), before + 1);
    advance(3 * F.cfg.timing.heartbeat_ms);
    tick();
    drop_proposals();
    assert_int_equal(count_changes("transfer"), before + 2);
    assert_int_equal(F.changes[F.n_changes - 1].id, node("n2")->id);
    /* It succeeds: no longer leader, nothing more. */
    F.view.leader = false;
    complete(&F.changes[F.n_changes - 1], 0);
    advance(3000);
    tick();
    assert_int_equal(count_changes("transfer"), before + 2);
}

static void test_join_adds_then_assigns(void **unused)
{
    (void)unused;
    three_nodes();
    add_node("n4", false);
    F.view.n_members--; /* n4 is a peer, not yet a member */
    us_controller_join_request(&F.ctl, &F.view, "n4", "127.0.0.1:7204");
    assert_int_equal(F.n_changes, 1);
    assert_string_equal(F.changes[0].kind, "add");
    assert_int_equal(F.changes[0].id, us_node_id("n4"));
    assert_string_equal(F.changes[0].address, "127.0.0.1:7204");
    /* One change at a time: a second request waits. */
    us_controller_join_request(&F.ctl, &F.view, "n4", "127.0.0.1:7204");
    assert_int_equal(F.n_changes, 1);
    F.view.members[F.view.n_members++] = (us_view_member){us_node_id("n4"), US_MEMBER_SPARE};
    complete(&F.changes[0], 0);
    /* Four members, three voters: the fourth does not vote. */
    assert_int_equal(F.n_changes, 2);
    assert_string_equal(F.changes[1].kind, "assign");
    assert_int_equal(F.changes[1].id, us_node_id("n4"));
    assert_int_equal(F.changes[1].role, US_MEMBER_STANDBY);
    assert_true(F.reconciles >= 1);
    F.view.members[3].role = US_MEMBER_STANDBY;
    complete(&F.changes[1], 0);
    assert_int_equal(F.n_props, 0); /* no event for a join's role */

    /* The fifth member is added as a voter: add, then promote. */
    add_node("n5", false);
    F.view.n_members--;
    us_controller_join_request(&F.ctl, &F.view, "n5", "127.0.0.1:7205");
    assert_int_equal(F.n_changes, 3);
    assert_string_equal(F.changes[2].kind, "add");
    assert_int_equal(F.changes[2].id, us_node_id("n5"));
    F.view.members[F.view.n_members++] = (us_view_member){us_node_id("n5"), US_MEMBER_SPARE};
    complete(&F.changes[2], 0);
    assert_int_equal(F.n_changes, 4);
    assert_string_equal(F.changes[3].kind, "assign");
    assert_int_equal(F.changes[3].id, us_node_id("n5"));
    assert_int_equal(F.changes[3].role, US_MEMBER_VOTER);

    /* A failed add assigns nothing. */
    add_node("n6", false);
    F.view.n_members--;
    complete(&F.changes[3], 0);
    us_controller_join_request(&F.ctl, &F.view, "n6", "127.0.0.1:7206");
    assert_int_equal(F.n_changes, 5);
    complete(&F.changes[4], 1);
    assert_int_equal(F.n_changes, 5);

    /* A member already in is not added again; a bad address or name is ignored. */
    us_controller_join_request(&F.ctl, &F.view, "n2", "127.0.0.1:7201");
    us_controller_join_request(&F.ctl, &F.view, "n7", "nowhere");
    us_controller_join_request(&F.ctl, &F.view, "N 7", "127.0.0.1:7207");
    assert_int_equal(F.n_changes, 5);
}

static void test_autopilot_promotes_a_spare_voter(void **unused)
{
    (void)unused;
    add_node("n1", true);
    add_node("n2", false);
    add_node("n3", true);
    settle();
    /* Two voters of three members: keep_voters promotes n2 and records it once done. */
    int last = F.n_changes - 1;
    assert_true(last >= 0);
    assert_string_equal(F.changes[last].kind, "assign");
    assert_int_equal(F.changes[last].id, us_node_id("n2"));
    assert_int_equal(F.changes[last].role, US_MEMBER_VOTER);
    /* While the change is in flight nothing else is asked for. */
    tick();
    assert_int_equal(F.n_changes, last + 1);
    F.view.members[1].role = US_MEMBER_VOTER;
    complete(&F.changes[last], 0);
    assert_int_equal(count_ops("event"), 1);
    const us_event *e = NULL;
    commit();
    e = us_state_event(F.state, F.state->event_seq);
    assert_non_null(e);
    assert_string_equal(e->kind, "voter");
    assert_string_equal(e->node, "n2");
    assert_string_equal(e->to, "voter");
    assert_int_equal(e->time_ms, F.wall_ms);
}

static void test_nothing_while_in_flight(void **unused)
{
    (void)unused;
    three_nodes();
    char active[US_NAME_MAX];
    us_strlcpy(active, place("db"), sizeof active);
    advance(20000);
    us_view_node *x = node(active);
    x->state = US_NODE_DEAD;
    x->last_seen_ms = F.now_ms - 10000;
    F.lease[x - F.view.nodes] = US_LEASE_EXPIRED;

    /* Earlier proposals not applied yet: decide on the state they produce, not now. */
    F.view.applies_in_flight = 1;
    us_controller_tick(&F.ctl, &F.view);
    assert_int_equal(F.n_props, 0);
    /* Not the leader (or closing): nothing at all. */
    F.view.applies_in_flight = 0;
    F.view.leader = false;
    us_controller_tick(&F.ctl, &F.view);
    assert_int_equal(F.n_props, 0);
    F.view.leader = true;
    F.view.closing = true;
    us_controller_tick(&F.ctl, &F.view);
    assert_int_equal(F.n_props, 0);
    F.view.closing = false;
    /* Now it acts; once its proposals are out, the next tick waits for them. */
    tick();
    int n = F.n_props;
    assert_true(n >= 1);
    tick();
    assert_int_equal(F.n_props, n);
}

static void test_events_only_on_change(void **unused)
{
    (void)unused;
    three_nodes();
    add_service("db");
    for (int i = 0; i < F.view.n_nodes; i++)
        report(F.view.nodes[i].name, "db")->obs.state = US_INST_NONE;
    settle();
    int events = count_ops("event");
    assert_int_equal(events, 0);

    /* n2 misses heartbeats: suspect, recorded once. */
    advance(1000);
    us_view_node *n2 = node("n2");
    n2->state = US_NODE_SUSPECT;
    n2->last_seen_ms = F.now_ms - 700;
    tick();
    assert_int_equal(count_ops("event"), 1);
    commit();
    tick();
    assert_int_equal(count_ops("event"), 0);
    commit();
    /* It answers again: one more. */
    n2->state = US_NODE_ALIVE;
    n2->last_seen_ms = F.now_ms;
    tick();
    assert_int_equal(count_ops("event"), 1);
    commit();
    const us_event *e = us_state_event(F.state, F.state->event_seq);
    assert_non_null(e);
    assert_string_equal(e->kind, "node");
    assert_string_equal(e->to, "alive");
    assert_non_null(strstr(e->cause, "answers again"));

    /* A health change of n1's instance: once; the same health again: nothing. */
    report("n1", "db")->obs.health = US_HEALTH_UNHEALTHY;
    us_strlcpy(report("n1", "db")->obs.cause, "probe refused", US_REASON_MAX);
    tick();
    assert_int_equal(count_ops("event"), 1);
    commit();
    e = us_state_event(F.state, F.state->event_seq);
    assert_string_equal(e->kind, "health");
    assert_string_equal(e->service, "db");
    assert_string_equal(e->node, "n1");
    assert_string_equal(e->cause, "probe refused");
    tick();
    assert_int_equal(count_ops("event"), 0);
    commit();

    /* A standby restart (the running total grows): once. */
    report("n2", "db")->restarts = 1;
    us_strlcpy(report("n2", "db")->restart_cause, "standby exited", US_REASON_MAX);
    tick();
    assert_int_equal(count_ops("event"), 1);
    commit();
    e = us_state_event(F.state, F.state->event_seq);
    assert_string_equal(e->kind, "restart");
    assert_string_equal(e->cause, "standby exited");
    tick();
    assert_int_equal(count_ops("event"), 0);
    commit();

    /* A new leadership forgets what was recorded: its first tick only primes. */
    us_controller_became_leader(&F.ctl, F.now_ms);
    n2->state = US_NODE_DEAD;
    tick();
    assert_int_equal(count_ops("event"), 0);
    drop_proposals();
}

/* The walk over pairs of service and node takes each pair's last observation by its place while
 * the pairs stay the same, and finds it by name once they change: services in another order
 * record no event for what did not change, and the next change is told from the right value. */
static void test_events_follow_their_pairs(void **unused)
{
    (void)unused;
    three_nodes();
    add_service("db");
    add_service("web");
    for (int i = 0; i < F.view.n_nodes; i++) {
        report(F.view.nodes[i].name, "db")->obs.state = US_INST_NONE;
        report(F.view.nodes[i].name, "web")->obs.state = US_INST_NONE;
    }
    settle();
    report("n1", "db")->obs.health = US_HEALTH_HEALTHY;
    report("n2", "web")->obs.health = US_HEALTH_UNHEALTHY;
    us_strlcpy(report("n2", "web")->obs.cause, "probe refused", US_REASON_MAX);
    tick();
    assert_int_equal(count_ops("event"), 2);
    commit();
    tick();
    assert_int_equal(count_ops("event"), 0);
    commit();

    /* web, db: every pair at another place of the walk */
    us_service_set set = {0};
    assert_int_equal(us_service_set_reserve(&set, 2), 0);
    set.svc[set.n++] = F.state->services.svc[1];
    set.svc[set.n++] = F.state->services.svc[0];
    json_t *cmd = us_cmd_services(&set);
    us_service_set_free(&set);
    assert_int_equal(us_state_apply(F.state, cmd), 0);
    json_decref(cmd);
    assert_string_equal(F.state->asg[0].service, "web");
    tick();
    assert_int_equal(count_ops("event"), 0);
    commit();
    tick();
    assert_int_equal(count_ops("event"), 0);
    commit();

    report("n2", "web")->obs.health = US_HEALTH_HEALTHY;
    tick();
    assert_int_equal(count_ops("event"), 1);
    commit();
    const us_event *e = us_state_event(F.state, F.state->event_seq);
    assert_string_equal(e->kind, "health");
    assert_string_equal(e->service, "web");
    assert_string_equal(e->node, "n2");
    assert_string_equal(e->from, "unhealthy");
    assert_string_equal(e->to, "healthy");
    tick();
    assert_int_equal(count_ops("event"), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_registers_nodes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_adopting_restart_keeps_the_role, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dead_active_released_for_lease, setup, teardown),
        cmocka_unit_test_setup_teardown(test_guardian_fenced_active_released, setup, teardown),
        cmocka_unit_test_setup_teardown(test_leadership_moves_off_the_active_to_a_caught_up_voter,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_join_adds_then_assigns, setup, teardown),
        cmocka_unit_test_setup_teardown(test_autopilot_promotes_a_spare_voter, setup, teardown),
        cmocka_unit_test_setup_teardown(test_nothing_while_in_flight, setup, teardown),
        cmocka_unit_test_setup_teardown(test_events_only_on_change, setup, teardown),
        cmocka_unit_test_setup_teardown(test_events_follow_their_pairs, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
