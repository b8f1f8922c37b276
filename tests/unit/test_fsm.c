/* test_fsm.c — the replicated state machine: commands applied directly to a us_state, the
 * whole-state JSON encoding, command encoding, and the libraft glue driven through libraft's
 * in-memory cluster fixture (replication, a leader deposed in the middle of an apply, snapshots).
 *
 * The promises checked are those of fsm.h: every command is idempotent or CAS-guarded, epochs
 * only grow (also across delete and re-add), bad input changes nothing, `version` bumps only when
 * something changed, and all servers of a cluster end up with the same state.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <raft.h>
#include <raft/fixture.h>

#include "core/decide.h"
#include "core/fsm.h"
#include "core/role.h"

/* ---- helpers ---- */

/* Heap blocks of the running test, released by the teardown also when an assertion fails. */
#define MAX_TRACKED 32
static void *g_tracked[MAX_TRACKED];
static int g_n_tracked;

static void *track(void *p)
{
    assert_non_null(p);
    assert_true(g_n_tracked < MAX_TRACKED);
    g_tracked[g_n_tracked++] = p;
    return p;
}

static us_state *g_states[MAX_TRACKED]; /* their rings are freed by the teardown */
static int g_n_states;

static struct raft_fixture *g_fixture; /* closed by the teardown */

static int teardown(void **state)
{
    (void)state;
    if (g_fixture)
        raft_fixture_close(g_fixture);
    g_fixture = NULL;
    while (g_n_states > 0)
        us_state_free(g_states[--g_n_states]);
    while (g_n_tracked > 0)
        free(g_tracked[--g_n_tracked]);
    return 0;
}

static us_state *new_state(void)
{
    us_state *s = track(calloc(1, sizeof(us_state)));
    assert_true(g_n_states < MAX_TRACKED);
    g_states[g_n_states++] = s;
    return s;
}

static us_state *copy_state(const us_state *s)
{
    us_state *c = new_state();
    assert_int_equal(us_state_copy(c, s), 0);
    return c;
}

/* Byte for byte, but the arrays it owns by their used entries (the pointers differ). */
static bool same_state(const us_state *a, const us_state *b)
{
    us_state *x = malloc(sizeof *x), *y = malloc(sizeof *y);
    assert_non_null(x);
    assert_non_null(y);
    memcpy(x, a, sizeof *x);
    memcpy(y, b, sizeof *y);
    x->events = y->events = NULL;
    x->services.svc = y->services.svc = NULL;
    x->asg = y->asg = NULL;
    x->stats = y->stats = NULL;
    x->touched = y->touched = NULL; /* local (fsm.h) */
    x->defs_v = y->defs_v = 0;      /* local too */
    x->services.cap = y->services.cap = x->cap = y->cap = 0;
    bool same = memcmp(x, y, sizeof *x) == 0;
    free(x);
    free(y);
    size_t n = (size_t)a->services.n;
    same = same &&
           (n == 0 || (memcmp(a->services.svc, b->services.svc, n * sizeof(us_service_def)) == 0 &&
                       memcmp(a->stats, b->stats, n * sizeof(us_service_stats)) == 0));
    /* Assignments as replicated: def_digest is local (model.h). */
    for (size_t i = 0; same && i < n; i++) {
        static us_assignment p, q;
        memcpy(&p, &a->asg[i], sizeof p);
        memcpy(&q, &b->asg[i], sizeof q);
        memset(p.def_digest, 0, sizeof p.def_digest);
        memset(q.def_digest, 0, sizeof q.def_digest);
        same = memcmp(&p, &q, sizeof p) == 0;
    }
    for (uint64_t q = us_state_first_event(a); same && q && q <= a->event_seq; q++)
        same = us_state_event(b, q) &&
               memcmp(us_state_event(a, q), us_state_event(b, q), sizeof(us_event)) == 0;
    return same;
}

static us_node mk_node(const char *name, uint64_t inc)
{
    us_node n;
    memset(&n, 0, sizeof n);
    us_strlcpy(n.name, name, sizeof n.name);
    n.id = us_node_id(name);
    snprintf(n.address, sizeof n.address, "10.0.0.%zu:7200", strlen(name));
    snprintf(n.api, sizeof n.api, "10.0.0.%zu:7201", strlen(name));
    n.incarnation = inc;
    n.voter = true;
    return n;
}

static void mk_svc(us_service_def *d, const char *name)
{
    us_service_defaults(d);
    us_strlcpy(d->name, name, sizeof d->name);
    snprintf(d->run, sizeof d->run, "exec /usr/bin/%s --serve", name);
}

/* A service set from space-separated names. */
static us_service_set *fill_set(us_service_set *set, const char *names)
{
    memset(set, 0, sizeof *set);
    char buf[512];
    us_strlcpy(buf, names, sizeof buf);
    for (char *save = NULL, *w = strtok_r(buf, " ", &save); w; w = strtok_r(NULL, " ", &save)) {
        assert_int_equal(us_service_set_reserve(set, set->n + 1), 0);
        mk_svc(&set->svc[set->n++], w);
    }
    return set;
}

static us_service_set *mk_set(const char *names)
{
    us_service_set *set = fill_set(track(malloc(sizeof(us_service_set))), names);
    if (set->svc)
        track(set->svc);
    return set;
}

/* Apply and release a command. */
static int apply(us_state *s, json_t *cmd)
{
    assert_non_null(cmd);
    int rc = us_state_apply(s, cmd);
    json_decref(cmd);
    return rc;
}

static int apply_node(us_state *s, const char *name, uint64_t inc)
{
    us_node n = mk_node(name, inc);
    return apply(s, us_cmd_node_up(&n));
}

static int apply_services(us_state *s, const char *names)
{
    us_service_set *set = fill_set(malloc(sizeof *set), names);
    json_t *cmd = us_cmd_services(set);
    us_service_set_free(set);
    free(set);
    return apply(s, cmd);
}

static int apply_text(us_state *s, const char *text)
{
    json_error_t jerr;
    json_t *cmd = json_loads(text, JSON_DECODE_ANY, &jerr);
    if (!cmd)
        fail_msg("test command does not parse: %s: %s", text, jerr.text);
    return apply(s, cmd);
}

static const us_assignment *asg_of(const us_state *s, const char *service)
{
    int i = us_state_find_service(s, service);
    if (i < 0)
        fail_msg("service %s not in the state", service);
    return &s->asg[i];
}

/* The next assignment of `service` as a decision would propose it (gen = current gen). */
static us_assignment next_asg(const us_state *s, const char *service, uint64_t epoch,
                              const char *active, const char *standby, const char *reason)
{
    us_assignment a = *asg_of(s, service);
    a.epoch = epoch;
    us_strlcpy(a.active, active, sizeof a.active);
    a.active_inc = active[0] ? 7 : 0;
    a.n_standbys = 0;
    if (standby && standby[0])
        us_strlcpy(a.standbys[a.n_standbys++], standby, US_NAME_MAX);
    us_strlcpy(a.reason, reason, sizeof a.reason);
    return a;
}

/* Three nodes and two services, as most tests start. */
static us_state *base_state(void)
{
    us_state *s = new_state();
    assert_int_equal(apply_node(s, "n1", 11), US_APPLY_OK);
    assert_int_equal(apply_node(s, "n2", 12), US_APPLY_OK);
    assert_int_equal(apply_node(s, "n3", 13), US_APPLY_OK);
    assert_int_equal(apply_services(s, "web db"), US_APPLY_OK);
    return s;
}

static void assert_unchanged(const us_state *before, const us_state *after)
{
    assert_true(same_state(before, after));
}

/* Field by field: strings compared as strings (bytes after the terminator do not count). */
static void assert_state_equal(const us_state *a, const us_state *b)
{
    assert_int_equal(a->version, b->version);
    assert_int_equal(a->n_nodes, b->n_nodes);
    for (int i = 0; i < a->n_nodes; i++) {
        const us_node *x = &a->nodes[i], *y = &b->nodes[i];
        assert_string_equal(x->name, y->name);
        assert_int_equal(x->id, y->id);
        assert_string_equal(x->address, y->address);
        assert_string_equal(x->api, y->api);
        assert_string_equal(x->service_host, y->service_host);
        assert_int_equal(x->incarnation, y->incarnation);
        assert_int_equal(x->roles_v, y->roles_v);
        assert_int_equal(x->voter, y->voter);
        assert_int_equal(x->leaving, y->leaving);
        assert_int_equal(x->removing, y->removing);
        assert_int_equal(x->left, y->left);
    }
    assert_int_equal(a->services.n, b->services.n);
    for (int i = 0; i < a->services.n; i++) {
        const us_service_def *x = &a->services.svc[i], *y = &b->services.svc[i];
        assert_string_equal(x->name, y->name);
        assert_string_equal(x->run, y->run);
        assert_string_equal(x->promote, y->promote);
        assert_string_equal(x->demote, y->demote);
        assert_int_equal(x->standby, y->standby);
        assert_int_equal(x->standbys, y->standbys);
        assert_int_equal(x->n_nodes, y->n_nodes);
        for (int k = 0; k < x->n_nodes; k++)
            assert_string_equal(x->nodes[k], y->nodes[k]);
        assert_int_equal(x->hook_timeout_ms, y->hook_timeout_ms);
        assert_int_equal(x->stop_timeout_ms, y->stop_timeout_ms);
        const us_assignment *p = &a->asg[i], *q = &b->asg[i];
        assert_string_equal(p->service, q->service);
        assert_int_equal(p->gen, q->gen);
        assert_int_equal(p->epoch, q->epoch);
        assert_string_equal(p->active, q->active);
        assert_int_equal(p->active_inc, q->active_inc);
        assert_int_equal(p->demoting, q->demoting);
        assert_string_equal(p->target, q->target);
        assert_int_equal(p->n_standbys, q->n_standbys);
        for (int k = 0; k < p->n_standbys; k++)
            assert_string_equal(p->standbys[k], q->standbys[k]);
        assert_string_equal(p->reason, q->reason);
    }
    assert_int_equal(a->n_retired, b->n_retired);
    for (int i = 0; i < a->n_retired; i++) {
        assert_string_equal(a->retired[i].name, b->retired[i].name);
        assert_int_equal(a->retired[i].epoch, b->retired[i].epoch);
    }
}

/* ---- node_up / node_flags ---- */

static void test_node_up_sorted(void **state)
{
    (void)state;
    us_state *s = new_state();
    const char *order[] = {"n3", "n1", "web-2", "a0", "n10", "n2"};
    for (size_t i = 0; i < sizeof order / sizeof order[0]; i++)
        assert_int_equal(apply_node(s, order[i], 100 + i), US_APPLY_OK);
    const char *sorted[] = {"a0", "n1", "n10", "n2", "n3", "web-2"};
    assert_int_equal(s->n_nodes, 6);
    for (int i = 0; i < 6; i++) {
        assert_string_equal(s->nodes[i].name, sorted[i]);
        assert_int_equal(s->nodes[i].id, us_node_id(sorted[i]));
        assert_int_equal(us_state_find_node(s, sorted[i]), i);
    }
    assert_int_equal(s->nodes[us_state_find_node(s, "n3")].incarnation, 100);
    assert_int_equal(s->nodes[us_state_find_node(s, "n2")].incarnation, 105);
    assert_int_equal(us_state_find_node(s, "n4"), -1);
    assert_int_equal(s->version, 6);
}

static void test_node_up_idempotent_and_update(void **state)
{
    (void)state;
    us_state *s = new_state();
    assert_int_equal(apply_node(s, "n1", 1), US_APPLY_OK);
    us_state *before = copy_state(s);
    assert_int_equal(apply_node(s, "n1", 1), US_APPLY_NOOP);
    assert_unchanged(before, s);

    us_node n = mk_node("n1", 1);
    us_strlcpy(n.address, "192.168.1.9:7300", sizeof n.address);
    n.voter = false;
    assert_int_equal(apply(s, us_cmd_node_up(&n)), US_APPLY_OK);
    assert_int_equal(s->n_nodes, 1);
    assert_string_equal(s->nodes[0].address, "192.168.1.9:7300");
    assert_false(s->nodes[0].voter);
    assert_int_equal(s->version, 2);
    assert_int_equal(apply(s, us_cmd_node_up(&n)), US_APPLY_NOOP);
    assert_int_equal(s->version, 2);
}

/* A restarted agent (new incarnation) is available again: maintenance flags clear. */
static void test_node_up_new_incarnation_clears_flags(void **state)
{
    (void)state;
    us_state *s = base_state();
    assert_int_equal(apply(s, us_cmd_node_flags("n2", true, true, true)), US_APPLY_OK);
    int i = us_state_find_node(s, "n2");
    assert_true(s->nodes[i].leaving && s->nodes[i].removing && s->nodes[i].left);
    uint64_t v = s->version;

    assert_int_equal(apply_node(s, "n2", 99), US_APPLY_OK);
    assert_int_equal(s->nodes[i].incarnation, 99);
    assert_false(s->nodes[i].leaving);
    assert_false(s->nodes[i].removing);
    assert_false(s->nodes[i].left);
    assert_int_equal(s->version, v + 1);

    /* Flags in the command itself do not survive a restart either. */
    assert_int_equal(apply(s, us_cmd_node_flags("n2", true, false, false)), US_APPLY_OK);
    us_node n = mk_node("n2", 100);
    n.leaving = n.removing = n.left = true;
    assert_int_equal(apply(s, us_cmd_node_up(&n)), US_APPLY_OK);
    assert_false(s->nodes[i].leaving || s->nodes[i].removing || s->nodes[i].left);
}

/* A node's service_host travels in node_up and snapshots (a bad one refuses the command), and
 * us_active_env_of (role.h) gives every process of a service where the active is. */
/* us_active_env_of's four variables for `service`, each given without its "KEY=". */
static void assert_active_env(const us_state *s, const char *service, const char *node,
                              const char *host, const char *epoch, const char *standbys)
{
    us_active_env e;
    char want[512];
    us_active_env_of(s, service, &e);
    snprintf(want, sizeof want, "UNDERSTUDY_ACTIVE_NODE=%s", node);
    assert_string_equal(e.node, want);
    snprintf(want, sizeof want, "UNDERSTUDY_ACTIVE_HOST=%s", host);
    assert_string_equal(e.host, want);
    snprintf(want, sizeof want, "UNDERSTUDY_ACTIVE_EPOCH=%s", epoch);
    assert_string_equal(e.epoch, want);
    snprintf(want, sizeof want, "UNDERSTUDY_STANDBYS=%s", standbys);
    assert_string_equal(e.standbys, want);
}

static void test_service_host_and_active_env(void **state)
{
    (void)state;
    us_state *s = base_state();                  /* n1..n3 at 10.0.0.2:7200; web, db */
    assert_active_env(s, "web", "", "", "", ""); /* not placed yet */

    us_node n = mk_node("n2", 12);
    us_strlcpy(n.service_host, "db-2.example", sizeof n.service_host);
    assert_int_equal(apply(s, us_cmd_node_up(&n)), US_APPLY_OK);
    assert_string_equal(s->nodes[us_state_find_node(s, "n2")].service_host, "db-2.example");
    us_state *before = copy_state(s);
    json_t *bad = us_cmd_node_up(&n);
    json_object_set_new(json_object_get(bad, "node"), "service_host", json_string("-x; rm -rf /"));
    assert_int_equal(apply(s, bad), US_APPLY_BAD);
    bad = us_cmd_node_up(&n);
    json_object_set_new(json_object_get(bad, "node"), "service_host", json_integer(5));
    assert_int_equal(apply(s, bad), US_APPLY_BAD);
    assert_unchanged(before, s);

    us_assignment a = next_asg(s, "web", 3, "n2", "n1", "placed");
    assert_int_equal(apply(s, us_cmd_assign(&a)), US_APPLY_OK);
    us_strlcpy(a.standbys[a.n_standbys++], "n3", sizeof a.standbys[0]);
    a.gen = asg_of(s, "web")->gen;
    assert_int_equal(apply(s, us_cmd_assign(&a)), US_APPLY_OK);
    assert_active_env(s, "web", "n2", "db-2.example", "3", "n1 n3");
    /* Without a service_host: the host of the cluster address. */
    a = next_asg(s, "web", 4, "n1", "n2", "moved");
    assert_int_equal(apply(s, us_cmd_assign(&a)), US_APPLY_OK);
    assert_active_env(s, "web", "n1", "10.0.0.2", "4", "n2");
    assert_active_env(s, "nosuch", "", "", "", "");
    /* The role each node is told it has (UNDERSTUDY_ROLE). */
    uint64_t epoch;
    assert_string_equal(us_assigned_role(s, "web", "n1", &epoch), "active");
    assert_int_equal(epoch, 4);
    assert_string_equal(us_assigned_role(s, "web", "n2", &epoch), "standby");
    assert_string_equal(us_assigned_role(s, "web", "n3", &epoch), "none");
    assert_string_equal(us_assigned_role(s, "nosuch", "n1", &epoch), "none");
    assert_int_equal(epoch, 0);

    /* Through a snapshot. */
    json_t *j = us_state_to_json(s);
    us_state *back = new_state();
    assert_int_equal(us_state_from_json(back, j), 0);
    json_decref(j);
    assert_state_equal(s, back);
}

/* us_cmd_hint: an assign finds its service where "ix" says, checked by name; a hint that is
 * wrong, out of range or not a number costs only the search and changes nothing else. defs_v
 * moves with services commands alone (notify.c re-reads the hooks then). */
static void test_assign_hint_and_defs_v(void **state)
{
    (void)state;
    us_state *s = base_state(); /* web at 0, db at 1 */
    uint64_t defs_v = s->defs_v;
    assert_int_equal(defs_v, s->version);
    struct {
        json_t *ix;
        const char *service;
    } cases[] = {
        {json_integer(1), "db"},  {json_integer(0), "db"},          {json_integer(7), "web"},
        {json_integer(-3), "db"}, {json_integer(1LL << 40), "web"}, {json_string("0"), "db"},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        const us_assignment *was = asg_of(s, cases[k].service);
        uint64_t epoch = was->epoch + 1;
        us_assignment a = next_asg(s, cases[k].service, epoch, "n2", "n1", "moved");
        json_t *cmd = us_cmd_assign(&a);
        json_object_set_new(cmd, "ix", cases[k].ix);
        const char *other = strcmp(cases[k].service, "web") == 0 ? "db" : "web";
        uint64_t other_epoch = asg_of(s, other)->epoch;
        assert_int_equal(apply(s, cmd), US_APPLY_OK);
        assert_int_equal(asg_of(s, cases[k].service)->epoch, epoch);
        assert_string_equal(asg_of(s, cases[k].service)->active, "n2");
        assert_int_equal(asg_of(s, other)->epoch, other_epoch);
    }
    us_assignment a = next_asg(s, "web", asg_of(s, "web")->epoch + 1, "n3", NULL, "hinted");
    assert_int_equal(apply(s, us_cmd_hint(us_cmd_assign(&a), 0)), US_APPLY_OK);
    assert_string_equal(asg_of(s, "web")->active, "n3");
    assert_int_equal(s->defs_v, defs_v); /* assignments are not definitions */
    assert_int_equal(apply_services(s, "web db cache"), US_APPLY_OK);
    assert_int_equal(s->defs_v, s->version);
    assert_true(s->defs_v > defs_v);
}

/* The whole pages of entries other than `keep` of an array of n entries of `size` bytes, made
 * inaccessible (PROT_NONE) or accessible again: a read of another entry then faults. */
static void guard_others(void *base, size_t size, int n, int keep, int prot)
{
    uintptr_t pg = (uintptr_t)sysconf(_SC_PAGESIZE), lo = (uintptr_t)base;
    uintptr_t first = (lo + pg - 1) & ~(pg - 1), end = (lo + size * (size_t)n) & ~(pg - 1);
    uintptr_t k0 = (lo + size * (size_t)keep) & ~(pg - 1);
    uintptr_t k1 = (lo + size * (size_t)(keep + 1) + pg - 1) & ~(pg - 1);
    if (k0 > first)
        assert_int_equal(mprotect((void *)first, k0 - first, prot), 0);
    if (end > k1)
        assert_int_equal(mprotect((void *)k1, end - k1, prot), 0);
}

/* A command about one service reads that service's definition and assignment and no other's
 * (fsm.h, us_cmd_hint): the others are behind PROT_NONE while it applies. Reading one field of
 * every definition per command, each on pages of its own, made 64 agents on two cores lose their
 * leases while placing (docs/testing.md, Scale); without the hint the search by name faults. */
static void test_command_reads_only_its_service(void **state)
{
    (void)state;
    us_state *s = new_state();
    assert_int_equal(apply_node(s, "n1", 11), US_APPLY_OK);
    assert_int_equal(apply_node(s, "n2", 12), US_APPLY_OK);
    assert_int_equal(apply_services(s, "s0 s1 s2 s3 s4 s5 s6 s7 s8 s9"), US_APPLY_OK);
    const int n = s->services.n, k = 8;
    us_assignment a = next_asg(s, "s8", 1, "n1", "n2", "initial placement on n1");
    json_t *cmd = us_cmd_hint(us_cmd_assign(&a), k);
    us_assignment b = next_asg(s, "s8", 1, "n1", NULL, "standby n2 dropped");
    b.gen++;
    json_t *cmd2 = us_cmd_hint(us_cmd_assign(&b), k);
    json_t *pause = us_cmd_hint(us_cmd_pause("s8", true), k);
    guard_others(s->services.svc, sizeof *s->services.svc, n, k, PROT_NONE);
    guard_others(s->asg, sizeof *s->asg, n, k, PROT_NONE);
    int rc = us_state_apply(s, cmd), rc2 = us_state_apply(s, cmd2), rc3 = us_state_apply(s, pause);
    guard_others(s->services.svc, sizeof *s->services.svc, n, k, PROT_READ | PROT_WRITE);
    guard_others(s->asg, sizeof *s->asg, n, k, PROT_READ | PROT_WRITE);
    json_decref(cmd);
    json_decref(cmd2);
    json_decref(pause);
    assert_int_equal(rc, US_APPLY_OK);
    assert_int_equal(rc2, US_APPLY_OK);
    assert_int_equal(rc3, US_APPLY_OK);
    assert_string_equal(asg_of(s, "s8")->active, "n1");
    assert_int_equal(asg_of(s, "s8")->n_standbys, 0);
    assert_true(asg_of(s, "s8")->paused);
    assert_int_equal(s->touched[k], s->version);
}

/* A planned restart (SIGUSR2): the new agent adopted the instances of the incarnation registered
 * until now, and its registration passes that incarnation's active roles to it under the same
 * epochs. An adoption claim for any other incarnation (an agent that came back too late, after a
 * kill -9 in between, or a stale claim) changes no role: decide then releases it ("agent on X
 * restarted", tests/scenarios/agent-restarted-incarnation-changed.scn). */
static void test_node_up_adopting_keeps_roles(void **state)
{
    (void)state;
    us_state *s = base_state();
    us_assignment a = next_asg(s, "web", 4, "n1", "n2", "initial placement on n1");
    a.active_inc = 11;
    assert_int_equal(apply(s, us_cmd_assign(&a)), US_APPLY_OK);
    us_assignment b = next_asg(s, "db", 2, "n2", "n1", "initial placement on n2");
    b.active_inc = 12;
    assert_int_equal(apply(s, us_cmd_assign(&b)), US_APPLY_OK);

    /* Adopted: same epoch, the role now belongs to incarnation 21; db (n2) untouched. */
    us_node n = mk_node("n1", 21);
    assert_int_equal(apply(s, us_cmd_stamp(us_cmd_node_up_adopting(&n, 11), 5, NULL)), US_APPLY_OK);
    assert_int_equal(asg_of(s, "web")->epoch, 4);
    assert_int_equal(asg_of(s, "web")->active_inc, 21);
    assert_string_equal(asg_of(s, "web")->active, "n1");
    assert_int_equal(asg_of(s, "db")->active_inc, 12);
    const us_event *e = us_state_event(s, s->event_seq);
    assert_string_equal(e->kind, "node");
    assert_string_equal(e->to, "restarted");
    assert_non_null(strstr(e->cause, "adopted its instances (1 active role kept"));

    /* A claim for an incarnation that is not the registered one (21) keeps nothing. */
    n = mk_node("n1", 31);
    assert_int_equal(apply(s, us_cmd_node_up_adopting(&n, 11)), US_APPLY_OK);
    assert_int_equal(asg_of(s, "web")->active_inc, 21);
    assert_int_equal(s->nodes[us_state_find_node(s, "n1")].incarnation, 31);

    /* A plain restart (no adoption) keeps nothing either. */
    n = mk_node("n2", 22);
    assert_int_equal(apply(s, us_cmd_node_up(&n)), US_APPLY_OK);
    assert_int_equal(asg_of(s, "db")->active_inc, 12);
    assert_int_equal(asg_of(s, "db")->epoch, 2);

    /* adopts 0 is us_cmd_node_up. */
    json_t *c = us_cmd_node_up_adopting(&n, 0);
    assert_null(json_object_get(c, "adopts"));
    json_decref(c);
}

static uint64_t roles_v_of(const us_state *s, const char *node)
{
    return s->nodes[us_state_find_node(s, node)].roles_v;
}

/* roles_v (model.h): the version of the last change to an active role a node held. Gaining a
 * role, or changes about others, leave it; losing, demoting, pausing, deleting move it. */
static void test_roles_v(void **state)
{
    (void)state;
    us_state *s = base_state();
    assert_int_equal(roles_v_of(s, "n1"), 0);
    us_assignment a = next_asg(s, "web", 1, "n1", "n2", "initial placement on n1");
    assert_int_equal(apply(s, us_cmd_assign(&a)), US_APPLY_OK);
    us_assignment b = next_asg(s, "db", 1, "n2", "n1", "initial placement on n2");
    assert_int_equal(apply(s, us_cmd_assign(&b)), US_APPLY_OK);
    assert_int_equal(roles_v_of(s, "n1"), 0); /* gains */
    assert_int_equal(roles_v_of(s, "n2"), 0);

    /* Standbys change, the holder keeps the role: nothing moves. */
    b = next_asg(s, "db", 1, "n2", "n3", "standby n3");
    assert_int_equal(apply(s, us_cmd_assign(&b)), US_APPLY_OK);
    assert_int_equal(roles_v_of(s, "n2"), 0);

    /* A switchover asks n1 to demote: n1's moves, n2's does not. */
    assert_int_equal(apply(s, us_cmd_switchover("web", asg_of(s, "web")->gen, "n3")), US_APPLY_OK);
    uint64_t v1 = s->version;
    assert_int_equal(roles_v_of(s, "n1"), v1);
    assert_int_equal(roles_v_of(s, "n2"), 0);
    /* An event, another node's registration: nothing. */
    us_event e = {0};
    us_strlcpy(e.kind, "node", sizeof e.kind);
    assert_int_equal(apply(s, us_cmd_event(&e)), US_APPLY_OK);
    assert_int_equal(apply_node(s, "n3", 23), US_APPLY_OK);
    assert_int_equal(roles_v_of(s, "n1"), v1);
    /* The role moves to n3 (a gain for n3, a loss for n1). */
    a = next_asg(s, "web", 2, "n3", "n1", "switchover");
    assert_int_equal(apply(s, us_cmd_assign(&a)), US_APPLY_OK);
    assert_int_equal(roles_v_of(s, "n1"), s->version);
    assert_int_equal(roles_v_of(s, "n3"), 0);
    /* A restart of n1 keeps its roles_v (commands do not carry it). */
    uint64_t v2 = s->version;
    assert_int_equal(apply_node(s, "n1", 31), US_APPLY_OK);
    assert_int_equal(roles_v_of(s, "n1"), v2);
    /* Pausing db, deleting web: their holders' move. */
    assert_int_equal(apply(s, us_cmd_pause("db", true)), US_APPLY_OK);
    assert_int_equal(roles_v_of(s, "n2"), s->version);
    assert_int_equal(roles_v_of(s, "n3"), 0); /* a command about db leaves web's holder */
    /* A command about a service nobody holds, or one that is not there: nothing moves. */
    uint64_t v3 = s->version;
    b = next_asg(s, "db", 1, "n2", "n1", "standby n1");
    b.gen = 999;
    assert_int_equal(apply(s, us_cmd_assign(&b)), US_APPLY_NOOP);
    assert_int_equal(apply(s, us_cmd_pause("nosuch", true)), US_APPLY_NOOP);
    assert_int_equal(roles_v_of(s, "n2"), v3);
    assert_int_equal(roles_v_of(s, "n3"), 0);
    assert_int_equal(apply_services(s, "db"), US_APPLY_OK);
    assert_int_equal(roles_v_of(s, "n3"), s->version);

    /* Kept by snapshots; a snapshot from before roles_v reads as "everything just changed". */
    json_t *j = us_state_to_json(s);
    us_state *back = new_state();
    assert_int_equal(us_state_from_json(back, j), 0);
    assert_state_equal(s, back);
    json_t *nodes = json_object_get(j, "nodes");
    for (size_t i = 0; i < json_array_size(nodes); i++)
        json_object_del(json_array_get(nodes, i), "roles_v");
    us_state *old = new_state();
    assert_int_equal(us_state_from_json(old, j), 0);
    json_decref(j);
    for (int i = 0; i < old->n_nodes; i++)
        assert_int_equal(old->nodes[i].roles_v, s->version);
    /* Commands do not carry it. */
    json_t *c = us_cmd_node_up(&s->nodes[0]);
    assert_null(json_object_get(json_object_get(c, "node"), "roles_v"));
    json_decref(c);
}

/* us_state_roles_by_node is us_state_role_versions for every node at once. */
static void test_roles_by_node(void **state)
{
    (void)state;
    us_state *s = base_state();
    us_assignment a = next_asg(s, "web", 1, "n1", "n2", "initial placement on n1");
    assert_int_equal(apply(s, us_cmd_assign(&a)), US_APPLY_OK);
    us_assignment b = next_asg(s, "db", 1, "n1", "n3", "initial placement on n1");
    assert_int_equal(apply(s, us_cmd_assign(&b)), US_APPLY_OK);
    b = next_asg(s, "db", 2, "n2", "n3", "moved to n2");
    assert_int_equal(apply(s, us_cmd_assign(&b)), US_APPLY_OK);
    b = next_asg(s, "db", 3, "n1", "n3", "back to n1");
    assert_int_equal(apply(s, us_cmd_assign(&b)), US_APPLY_OK);
    int held[US_MAX_NODES];
    uint64_t min[US_MAX_NODES], max[US_MAX_NODES];
    us_state_roles_by_node(s, held, min, max);
    int total = 0;
    for (int k = 0; k < s->n_nodes; k++) {
        uint64_t lo, hi;
        assert_int_equal(held[k], us_state_role_versions(s, s->nodes[k].name, &lo, &hi));
        assert_int_equal(min[k], lo);
        assert_int_equal(max[k], hi);
        total += held[k];
    }
    int n1 = us_state_find_node(s, "n1");
    assert_int_equal(held[n1], 2); /* not a test of nothing */
    assert_true(min[n1] < max[n1]);
    assert_int_equal(total, 2);
    assert_int_equal(us_state_find_node_from(s, "n2", n1), us_state_find_node(s, "n2"));
    assert_int_equal(us_state_find_node_from(s, "n1", n1), n1);
    assert_int_equal(us_state_find_node_from(s, "nx", n1), -1);
    assert_int_equal(us_state_find_node_from(s, "n1", 99), n1);
}

/* touched (fsm.h): moves for the services a command could change, and only for those; a
 * restored snapshot's are its version. An agent skips services whose touched stayed. */
static void test_touched_v(void **state)
{
    (void)state;
    us_state *s = base_state();
    int web = us_state_find_service(s, "web"), db = us_state_find_service(s, "db");
    assert_int_equal(s->touched[web], s->version); /* the services command */
    assert_int_equal(s->touched[db], s->version);
    uint64_t v0 = s->version;
    us_assignment a = next_asg(s, "web", 1, "n1", "n2", "initial placement on n1");
    assert_int_equal(apply(s, us_cmd_assign(&a)), US_APPLY_OK);
    assert_int_equal(s->touched[web], s->version);
    assert_int_equal(s->touched[db], v0);
    uint64_t v1 = s->version;
    /* Not applied (a stale gen), an event: nothing. */
    a.gen = 999;
    assert_int_equal(apply(s, us_cmd_assign(&a)), US_APPLY_NOOP);
    us_event e = {0};
    us_strlcpy(e.kind, "node", sizeof e.kind);
    assert_int_equal(apply(s, us_cmd_event(&e)), US_APPLY_OK);
    assert_int_equal(s->touched[web], v1);
    assert_int_equal(s->touched[db], v0);
    assert_int_equal(apply(s, us_cmd_pause("db", true)), US_APPLY_OK);
    assert_int_equal(s->touched[db], s->version);
    assert_int_equal(s->touched[web], v1);
    /* A node's registration may hand roles over (adoption): every service. */
    assert_int_equal(apply_node(s, "n4", 44), US_APPLY_OK);
    assert_int_equal(s->touched[web], s->version);
    assert_int_equal(s->touched[db], s->version);
    /* A snapshot: its version. */
    assert_int_equal(apply(s, us_cmd_pause("db", false)), US_APPLY_OK);
    json_t *j = us_state_to_json(s);
    us_state *back = new_state();
    assert_int_equal(us_state_from_json(back, j), 0);
    json_decref(j);
    assert_int_equal(back->touched[web], s->version);
    assert_int_equal(back->touched[db], s->version);
    assert_true(s->touched[web] < s->version);
    /* A services file that adds a service touches that one only; one that removes a service
     * touches every one (the services move). */
    uint64_t v_web = s->touched[web], v_db = s->touched[db];
    assert_int_equal(apply_services(s, "web db cache"), US_APPLY_OK);
    int cache = us_state_find_service(s, "cache");
    assert_int_equal(s->touched[cache], s->version);
    assert_int_equal(s->touched[web], v_web);
    assert_int_equal(s->touched[db], v_db);
    assert_int_equal(apply_services(s, "db cache"), US_APPLY_OK);
    for (int k = 0; k < s->services.n; k++)
        assert_int_equal(s->touched[k], s->version);
}

/* A services command decodes only the definitions it carries differently from the last one
 * (def_digest): the one in place stands for an unchanged text; an unknown digest (a restored
 * snapshot) decodes again. Shown by changing a held definition behind the FSM's back. */
static void test_services_skip_unchanged_definitions(void **state)
{
    (void)state;
    us_state *s = base_state();
    int web = us_state_find_service(s, "web");
    us_strlcpy(s->services.svc[web].run, "changed behind its back",
               sizeof s->services.svc[web].run);
    assert_int_equal(apply_services(s, "web db cache"), US_APPLY_OK);         /* adds cache */
    assert_string_equal(s->services.svc[web].run, "changed behind its back"); /* not decoded */
    assert_int_equal(apply_services(s, "web db cache"), US_APPLY_NOOP);
    memset(s->asg[web].def_digest, 0, sizeof s->asg[web].def_digest); /* unknown */
    assert_int_equal(apply_services(s, "web db cache"), US_APPLY_OK); /* decoded: it differs */
    assert_string_not_equal(s->services.svc[web].run, "changed behind its back");
    assert_int_equal(apply_services(s, "web db cache"), US_APPLY_NOOP);
    /* A command that keeps the digest: an assignment, which the FSM replaces whole. */
    us_assignment a = next_asg(s, "web", 1, "n1", "n2", "initial placement on n1");
    assert_int_equal(apply(s, us_cmd_assign(&a)), US_APPLY_OK);
    us_strlcpy(s->services.svc[web].run, "again", sizeof s->services.svc[web].run);
    assert_int_equal(apply_services(s, "web db cache"), US_APPLY_NOOP);
    assert_string_equal(s->services.svc[web].run, "again");
}

/* The snapshot threshold grows with the state, keeps each node's spread, and stays bounded; the
 * FSM remembers the size of the snapshot it took or restored. */
static void test_snapshot_threshold(void **state)
{
    (void)state;
    const unsigned lo = US_SNAPSHOT_THRESHOLD_MIN;
    assert_int_equal(us_snapshot_threshold(0, 0), lo);
    assert_int_equal(us_snapshot_threshold(0, US_SNAPSHOT_SPREAD / 2), lo + lo / 4);
    assert_int_equal(us_snapshot_threshold(0, US_SNAPSHOT_SPREAD + 7), us_snapshot_threshold(0, 7));
    /* up to 256 KB of state as before (512..767); 1 MB: each node between 2,048 and 3,072 */
    assert_int_equal(us_snapshot_threshold(US_SNAPSHOT_GROW_FROM, 0), lo);
    assert_int_equal(us_snapshot_threshold(US_SNAPSHOT_GROW_FROM, US_SNAPSHOT_SPREAD - 1),
                     lo + lo / 2 * (US_SNAPSHOT_SPREAD - 1) / US_SNAPSHOT_SPREAD);
    const unsigned mb = lo + ((1 << 20) - US_SNAPSHOT_GROW_FROM) / US_SNAPSHOT_BYTES_PER_ENTRY;
    assert_int_equal(mb, 2048);
    assert_int_equal(us_snapshot_threshold(1 << 20, 0), mb);
    assert_int_equal(us_snapshot_threshold(1 << 20, US_SNAPSHOT_SPREAD / 2), mb + mb / 4);
    /* grows with the state for every node, spreads them over half of it, stays bounded */
    for (unsigned spread = 0; spread < US_SNAPSHOT_SPREAD; spread += 85) {
        unsigned last = 0;
        for (size_t bytes = 0; bytes < ((size_t)1 << 32); bytes = bytes * 5 / 4 + 1000) {
            unsigned t = us_snapshot_threshold(bytes, spread);
            unsigned t0 = us_snapshot_threshold(bytes, 0);
            assert_true(t >= last);
            assert_true(t < US_SNAPSHOT_THRESHOLD_MAX);
            assert_true(t >= t0 &&
                        (t <= t0 + t0 / 2 || t0 >= US_SNAPSHOT_THRESHOLD_MAX - US_SNAPSHOT_SPREAD));
            last = t;
        }
    }
    assert_int_not_equal(us_snapshot_threshold((size_t)1 << 32, 0),
                         us_snapshot_threshold((size_t)1 << 32, US_SNAPSHOT_SPREAD - 1));

    us_fsm f, g;
    us_fsm_init(&f, NULL, NULL);
    us_fsm_init(&g, NULL, NULL);
    assert_int_equal(f.snapshot_bytes, 0);
    assert_int_equal(apply_node(&f.state, "n1", 1), US_APPLY_OK);
    struct raft_buffer *bufs = NULL;
    unsigned n = 0;
    assert_int_equal(f.raft.snapshot(&f.raft, &bufs, &n), 0);
    assert_int_equal(n, 1);
    assert_true(bufs[0].len > 0);
    assert_int_equal(f.snapshot_bytes, bufs[0].len);
    struct raft_buffer copy = {.base = raft_malloc(bufs[0].len), .len = bufs[0].len};
    memcpy(copy.base, bufs[0].base, bufs[0].len);
    assert_int_equal(f.raft.snapshot_finalize(&f.raft, &bufs, &n), 0);
    assert_int_equal(g.raft.restore(&g.raft, &copy), 0);
    assert_int_equal(g.snapshot_bytes, f.snapshot_bytes);
    assert_int_equal(g.state.n_nodes, 1);
    us_fsm_close(&f);
    us_fsm_close(&g);
}

/* The digest: the same text gives the same one; a changed value, type or order another. */
static void test_definition_digest(void **state)
{
    (void)state;
    const char *texts[] = {
        "{\"name\":\"web\",\"run\":\"x\",\"v\":2}",
        "{\"name\":\"web\",\"run\":\"y\",\"v\":2}",
        "{\"name\":\"web\",\"run\":\"x\",\"v\":\"2\"}",
        "{\"run\":\"x\",\"name\":\"web\",\"v\":2}",
        "{\"name\":\"web\",\"run\":\"x\",\"v\":2,\"nodes\":[\"n1\",\"n2\"]}",
        "{\"name\":\"web\",\"run\":\"x\",\"v\":2,\"nodes\":[\"n2\",\"n1\"]}",
        "{\"name\":\"web\",\"run\":\"x\",\"v\":2.0}",
        "{\"name\":\"web\",\"run\":\"x\",\"v\":null}",
    };
    enum { N = sizeof texts / sizeof texts[0] };
    unsigned char dg[N][US_DEF_DIGEST_LEN];
    for (int i = 0; i < N; i++) {
        json_error_t jerr;
        json_t *j = json_loads(texts[i], 0, &jerr), *again = json_loads(texts[i], 0, &jerr);
        unsigned char d2[US_DEF_DIGEST_LEN];
        assert_true(us_service_json_digest(j, dg[i]));
        assert_true(us_service_json_digest(again, d2));
        assert_memory_equal(dg[i], d2, sizeof d2);
        for (int k = 0; k < i; k++)
            assert_memory_not_equal(dg[i], dg[k], sizeof d2);
        json_decref(j);
        json_decref(again);
    }
    /* Nested past 16 levels: no digest (all zero), so the definition is decoded. */
    json_t *deep = json_array();
    for (int i = 0; i < 20; i++)
        deep = json_pack("[o]", deep);
    unsigned char d[US_DEF_DIGEST_LEN], zero[US_DEF_DIGEST_LEN] = {0};
    assert_false(us_service_json_digest(deep, d));
    assert_memory_equal(d, zero, sizeof d);
    json_decref(deep);
}

/* The controller (register_nodes in src/agent/controller.c) re-registers a node whose voter flag or
 * address changed with the SAME incarnation and copies the node's maintenance flags into the
 * command ("Only the voter flag or an address changed: keep maintenance flags"). A node in
 * maintenance or being removed that is, say, promoted to voter must stay leaving/removing. */
static void test_node_up_same_incarnation_keeps_flags(void **state)
{
    (void)state;
    us_state *s = base_state();
    int i = us_state_find_node(s, "n3");
    assert_int_equal(apply(s, us_cmd_node_flags("n3", true, true, false)), US_APPLY_OK);

    us_node n = s->nodes[i]; /* what register_nodes builds: same incarnation, flags kept */
    n.voter = !n.voter;
    assert_int_equal(apply(s, us_cmd_node_up(&n)), US_APPLY_OK);
    assert_int_equal(s->nodes[i].voter, n.voter);
    assert_true(s->nodes[i].leaving);
    assert_true(s->nodes[i].removing);
    assert_false(s->nodes[i].left);
}

static void test_node_up_bad(void **state)
{
    (void)state;
    us_state *s = new_state();
    char name[16];
    for (int i = 0; i < US_MAX_NODES; i++) {
        snprintf(name, sizeof name, "n%02d", i);
        assert_int_equal(apply_node(s, name, 1), US_APPLY_OK);
    }
    us_state *before = copy_state(s);
    assert_int_equal(apply_node(s, "n99", 1), US_APPLY_BAD); /* 17th node */
    assert_int_equal(apply_node(s, "N1", 1), US_APPLY_BAD);  /* invalid name */
    assert_int_equal(apply_node(s, "", 1), US_APPLY_BAD);
    assert_int_equal(apply_text(s, "{\"op\": \"node_up\"}"), US_APPLY_BAD);
    assert_int_equal(apply_text(s, "{\"op\": \"node_up\", \"node\": [\"n1\"]}"), US_APPLY_BAD);
    assert_unchanged(before, s);
    /* A full list still takes updates of its members. */
    assert_int_equal(apply_node(s, "n07", 2), US_APPLY_OK);
    assert_int_equal(s->nodes[7].incarnation, 2);
}

static void test_node_flags(void **state)
{
    (void)state;
    us_state *s = base_state();
    us_state *before = copy_state(s);
    assert_int_equal(apply(s, us_cmd_node_flags("n2", false, false, false)), US_APPLY_NOOP);
    assert_int_equal(apply(s, us_cmd_node_flags("n9", true, false, false)), US_APPLY_NOOP);
    assert_unchanged(before, s);

    int i = us_state_find_node(s, "n2");
    assert_int_equal(apply(s, us_cmd_node_flags("n2", true, false, false)), US_APPLY_OK);
    assert_true(s->nodes[i].leaving);
    assert_false(s->nodes[i].removing || s->nodes[i].left);
    assert_int_equal(s->version, before->version + 1);
    assert_int_equal(apply(s, us_cmd_node_flags("n2", true, false, false)), US_APPLY_NOOP);
    assert_int_equal(s->version, before->version + 1);

    assert_int_equal(apply(s, us_cmd_node_flags("n2", true, true, false)), US_APPLY_OK);
    assert_true(s->nodes[i].leaving && s->nodes[i].removing && !s->nodes[i].left);
    assert_int_equal(apply(s, us_cmd_node_flags("n2", true, false, true)), US_APPLY_OK);
    assert_true(s->nodes[i].leaving && !s->nodes[i].removing && s->nodes[i].left);
    assert_int_equal(apply(s, us_cmd_node_flags("n2", false, false, false)), US_APPLY_OK);
    assert_false(s->nodes[i].leaving || s->nodes[i].removing || s->nodes[i].left);
    assert_int_equal(s->version, before->version + 4);
    /* Flags cleared again: all else is as before (nothing but the flags was ever touched). */
    s->version = before->version;
    /* ... except the history: one event per change, naming the node and the new flag. */
    assert_int_equal(s->event_seq, before->event_seq + 4);
    const us_event *e = us_state_event(s, before->event_seq + 1);
    assert_string_equal(e->kind, "node");
    assert_string_equal(e->node, "n2");
    assert_string_equal(e->from, "member");
    assert_string_equal(e->to, "leaving");
    s->event_seq = before->event_seq;
    s->n_events = before->n_events;
    assert_unchanged(before, s);
}

/* ---- events and self-healing commands ---- */

static void test_events_from_assign(void **state)
{
    (void)state;
    us_state *s = base_state();
    uint64_t q0 = s->event_seq;
    us_assignment a = next_asg(s, "web", 1, "n1", "n2", "initial placement on n1");
    assert_int_equal(apply(s, us_cmd_stamp(us_cmd_assign(&a), 1700000000123, NULL)), US_APPLY_OK);
    /* n1 none -> active, n2 none -> standby, both with the decision's reason and time. */
    assert_int_equal(s->event_seq, q0 + 2);
    const us_event *e1 = us_state_event(s, q0 + 1), *e2 = us_state_event(s, q0 + 2);
    assert_string_equal(e1->kind, "role");
    assert_string_equal(e1->service, "web");
    assert_string_equal(e1->node, "n1");
    assert_string_equal(e1->from, "none");
    assert_string_equal(e1->to, "active");
    assert_string_equal(e1->cause, "initial placement on n1");
    assert_true(e1->time_ms == 1700000000123);
    assert_string_equal(e2->node, "n2");
    assert_string_equal(e2->to, "standby");
    /* A stale (CAS-failed) repeat records nothing. */
    assert_int_equal(apply(s, us_cmd_assign(&a)), US_APPLY_NOOP);
    assert_int_equal(s->event_seq, q0 + 2);

    /* Release for a restart in place: active -> restarting; a stamped cause wins. */
    us_assignment b = *asg_of(s, "web");
    b.active[0] = '\0';
    us_strlcpy(b.restart_node, "n1", sizeof b.restart_node);
    us_strlcpy(b.reason, "instance on n1 failed", sizeof b.reason);
    assert_int_equal(apply(s, us_cmd_stamp(us_cmd_assign(&b), 5, "custom cause")), US_APPLY_OK);
    const us_event *e3 = us_state_event(s, s->event_seq);
    assert_string_equal(e3->from, "active");
    assert_string_equal(e3->to, "restarting");
    assert_string_equal(e3->cause, "custom cause");

    /* Switchover: active -> demoting. */
    us_assignment c = *asg_of(s, "web");
    us_strlcpy(c.active, "n1", sizeof c.active);
    c.restart_node[0] = '\0';
    c.epoch++;
    assert_int_equal(apply(s, us_cmd_assign(&c)), US_APPLY_OK);
    assert_int_equal(apply(s, us_cmd_stamp(us_cmd_switchover("web", asg_of(s, "web")->gen, "n2"), 9,
                                           "switchover requested by CLI")),
                     US_APPLY_OK);
    const us_event *e4 = us_state_event(s, s->event_seq);
    assert_string_equal(e4->to, "demoting");
    assert_string_equal(e4->cause, "switchover requested by CLI");
}

static void test_drain_pause_reset(void **state)
{
    (void)state;
    us_state *s = base_state();
    int i = us_state_find_node(s, "n2");
    uint64_t q0 = s->event_seq;
    assert_int_equal(apply(s, us_cmd_stamp(us_cmd_node_drain("n2", true), 7, "drained by CLI")),
                     US_APPLY_OK);
    assert_true(s->nodes[i].drained);
    assert_int_equal(apply(s, us_cmd_node_drain("n2", true)), US_APPLY_NOOP);
    assert_int_equal(apply(s, us_cmd_node_drain("n9", true)), US_APPLY_NOOP);
    assert_int_equal(s->event_seq, q0 + 1);
    assert_string_equal(us_state_event(s, q0 + 1)->to, "drained");
    assert_string_equal(us_state_event(s, q0 + 1)->cause, "drained by CLI");
    /* Drain outlives an agent restart (unlike `leaving`). */
    assert_int_equal(apply_node(s, "n2", 99), US_APPLY_OK);
    assert_true(s->nodes[i].drained);
    assert_string_equal(us_state_event(s, s->event_seq)->to, "restarted");

    uint64_t gen = asg_of(s, "web")->gen;
    assert_int_equal(apply(s, us_cmd_pause("web", true)), US_APPLY_OK);
    assert_true(asg_of(s, "web")->paused);
    assert_true(asg_of(s, "web")->gen == gen + 1); /* decisions made before are void */
    assert_int_equal(apply(s, us_cmd_pause("web", true)), US_APPLY_NOOP);
    assert_string_equal(us_state_event(s, s->event_seq)->kind, "pause");
    assert_int_equal(apply(s, us_cmd_pause("web", false)), US_APPLY_OK);
    assert_false(asg_of(s, "web")->paused);

    /* Reset: failure records go, one event each; the restart count too. */
    us_assignment a = *asg_of(s, "web");
    a.n_fail = 2;
    us_strlcpy(a.fail[0].node, "n1", US_NAME_MAX);
    a.fail[0].failures = 3;
    a.fail[0].banned_until_ms = 1000;
    us_strlcpy(a.fail[1].node, "n2", US_NAME_MAX);
    a.fail[1].failures = 1;
    a.restarts = 2;
    assert_int_equal(apply(s, us_cmd_assign(&a)), US_APPLY_OK);
    assert_int_equal(asg_of(s, "web")->n_fail, 2);
    uint64_t q1 = s->event_seq;
    assert_int_equal(apply(s, us_cmd_reset("web", "n1")), US_APPLY_OK);
    assert_int_equal(asg_of(s, "web")->n_fail, 1);
    assert_string_equal(asg_of(s, "web")->fail[0].node, "n2");
    assert_int_equal(s->event_seq, q1 + 1);
    assert_string_equal(us_state_event(s, q1 + 1)->from, "3 failures, banned");
    assert_string_equal(us_state_event(s, q1 + 1)->to, "cleared");
    assert_int_equal(apply(s, us_cmd_reset("web", "")), US_APPLY_OK);
    assert_int_equal(asg_of(s, "web")->n_fail, 0);
    assert_int_equal(asg_of(s, "web")->restarts, 0);
    assert_int_equal(apply(s, us_cmd_reset("web", "")), US_APPLY_NOOP);
    assert_int_equal(apply(s, us_cmd_reset("nope", "")), US_APPLY_NOOP);

    /* R12: the lost active's position rides with the assignment (commands and snapshots); a
     * reset of the whole service lifts it (an operator accepts the loss), a node's does not. */
    a = *asg_of(s, "web");
    a.has_lost_position = true;
    a.lost_position = 250;
    assert_int_equal(apply(s, us_cmd_assign(&a)), US_APPLY_OK);
    assert_true(asg_of(s, "web")->has_lost_position);
    assert_int_equal(asg_of(s, "web")->lost_position, 250);
    json_t *snap = us_state_to_json(s);
    us_state *back = new_state();
    assert_int_equal(us_state_from_json(back, snap), 0);
    json_decref(snap);
    assert_true(asg_of(back, "web")->has_lost_position);
    assert_int_equal(asg_of(back, "web")->lost_position, 250);
    json_t *bad = us_cmd_assign(&a);
    json_object_set_new(json_object_get(bad, "asg"), "lost_position", json_integer(-5));
    us_state *before = copy_state(s);
    assert_int_equal(apply(s, bad), US_APPLY_BAD);
    assert_unchanged(before, s);
    assert_int_equal(apply(s, us_cmd_reset("web", "n1")), US_APPLY_NOOP);
    uint64_t q2 = s->event_seq;
    assert_int_equal(apply(s, us_cmd_reset("web", "")), US_APPLY_OK);
    assert_false(asg_of(s, "web")->has_lost_position);
    assert_string_equal(us_state_event(s, q2 + 1)->from, "position 250");
    assert_string_equal(us_state_event(s, q2 + 1)->to, "cleared");

    /* R13: the synchronous sets ride with the assignment; a change of the promotable set is an
     * event; a reset waives the set only while the role is free. */
    a = *asg_of(s, "web");
    us_strlcpy(a.sync[0], "n2", US_NAME_MAX);
    a.n_sync = 1;
    us_strlcpy(a.sync_want[0], "n2", US_NAME_MAX);
    us_strlcpy(a.sync_want[1], "n3", US_NAME_MAX);
    a.n_sync_want = 2;
    a.sync_gen = 4;
    uint64_t q3 = s->event_seq;
    assert_int_equal(apply(s, us_cmd_assign(&a)), US_APPLY_OK);
    assert_string_equal(us_state_event(s, q3 + 1)->kind, "sync");
    assert_string_equal(us_state_event(s, q3 + 1)->from, "none");
    assert_string_equal(us_state_event(s, q3 + 1)->to, "n2");
    snap = us_state_to_json(s);
    us_state *back2 = new_state();
    assert_int_equal(us_state_from_json(back2, snap), 0);
    json_decref(snap);
    const us_assignment *b2 = asg_of(back2, "web");
    assert_int_equal(b2->n_sync, 1);
    assert_string_equal(b2->sync[0], "n2");
    assert_int_equal(b2->n_sync_want, 2);
    assert_string_equal(b2->sync_want[1], "n3");
    assert_int_equal(b2->sync_gen, 4);
    bad = us_cmd_assign(&a);
    json_object_set_new(json_object_get(bad, "asg"), "sync", json_pack("[i]", 5));
    before = copy_state(s);
    assert_int_equal(apply(s, bad), US_APPLY_BAD);
    assert_unchanged(before, s);
    bool holder = asg_of(s, "web")->active[0] != '\0';
    assert_int_equal(apply(s, us_cmd_reset("web", "")), holder ? US_APPLY_NOOP : US_APPLY_OK);
    assert_int_equal(asg_of(s, "web")->sync_waived, !holder);
    if (holder) { /* free the role: now the waiver applies */
        a = *asg_of(s, "web");
        a.active[0] = '\0';
        a.active_inc = 0;
        assert_int_equal(apply(s, us_cmd_assign(&a)), US_APPLY_OK);
        assert_int_equal(apply(s, us_cmd_reset("web", "")), US_APPLY_OK);
        assert_true(asg_of(s, "web")->sync_waived);
    }
    assert_string_equal(us_state_event(s, s->event_seq)->to, "waived");

    /* switchover --force (accept_loss): the same waiver plus a target, only while nobody is
     * active; a reset of one node does not waive. */
    a = *asg_of(s, "web");
    a.sync_waived = false;
    a.has_lost_position = true;
    a.lost_position = 700;
    us_strlcpy(a.active, "n1", US_NAME_MAX);
    a.active_inc = 1;
    assert_int_equal(apply(s, us_cmd_assign(&a)), US_APPLY_OK);
    before = copy_state(s);
    assert_int_equal(apply(s, us_cmd_accept_loss("web", "n3")), US_APPLY_NOOP);
    assert_unchanged(before, s);
    a = *asg_of(s, "web");
    a.active[0] = '\0';
    a.active_inc = 0;
    assert_int_equal(apply(s, us_cmd_assign(&a)), US_APPLY_OK);
    assert_int_equal(apply(s, us_cmd_reset("web", "n2")), US_APPLY_NOOP);
    uint64_t gen0 = asg_of(s, "web")->gen;
    assert_int_equal(apply(s, us_cmd_accept_loss("web", "n3")), US_APPLY_OK);
    const us_assignment *w = asg_of(s, "web");
    assert_true(w->sync_waived);
    assert_false(w->has_lost_position);
    assert_string_equal(w->target, "n3");
    assert_true(w->gen > gen0);
    assert_int_equal(apply(s, us_cmd_accept_loss("web", "n3")), US_APPLY_NOOP); /* nothing left */
    assert_int_equal(apply(s, us_cmd_accept_loss("nope", "")), US_APPLY_NOOP);
}

static void test_event_ring(void **state)
{
    (void)state;
    us_state *s = new_state();
    assert_int_equal(us_state_first_event(s), 0);
    assert_null(us_state_event(s, 1));
    us_event e = {0};
    us_strlcpy(e.kind, "node", sizeof e.kind);
    us_strlcpy(e.node, "n1", sizeof e.node);
    us_strlcpy(e.from, "alive", sizeof e.from);
    us_strlcpy(e.to, "dead", sizeof e.to);
    for (int k = 1; k <= US_EVENTS_DEFAULT + 44; k++) {
        e.time_ms = k;
        snprintf(e.cause, sizeof e.cause, "event %d", k);
        assert_int_equal(apply(s, us_cmd_event(&e)), US_APPLY_OK);
    }
    assert_true(s->event_seq == US_EVENTS_DEFAULT + 44);
    assert_true(us_state_first_event(s) == 45);
    assert_null(us_state_event(s, 44));
    assert_string_equal(us_state_event(s, 45)->cause, "event 45");
    assert_true(us_state_event(s, s->event_seq)->time_ms == US_EVENTS_DEFAULT + 44);
    /* An event without a kind is rejected. */
    e.kind[0] = '\0';
    assert_int_equal(apply(s, us_cmd_event(&e)), US_APPLY_BAD);
    /* The kept history survives a snapshot. */
    json_t *j = us_state_to_json(s);
    us_state *back = new_state();
    assert_int_equal(us_state_from_json(back, j), 0);
    json_decref(j);
    assert_true(same_state(s, back));
}

static void add_events(us_state *s, int from, int to)
{
    us_event e = {0};
    us_strlcpy(e.kind, "node", sizeof e.kind);
    us_strlcpy(e.from, "alive", sizeof e.from);
    us_strlcpy(e.to, "dead", sizeof e.to);
    for (int k = from; k <= to; k++) {
        e.time_ms = k;
        assert_int_equal(apply(s, us_cmd_event(&e)), US_APPLY_OK);
    }
}

/* Kept events are exactly the n newest, each under its seq. */
static void assert_kept(const us_state *s, uint64_t last, int n)
{
    assert_true(s->event_seq == last);
    assert_int_equal(s->n_events, n);
    assert_true(us_state_first_event(s) == (n ? last - (uint64_t)n + 1 : 0));
    for (uint64_t q = 1; q <= last; q++) {
        const us_event *e = us_state_event(s, q);
        if (q + (uint64_t)n <= last) {
            assert_null(e);
        } else {
            assert_non_null(e);
            assert_true(e->seq == q && e->time_ms == (int64_t)q);
        }
    }
    assert_null(us_state_event(s, last + 1));
}

/* The ring's size is this node's (`[cluster] events_max`): it wraps at that size, resizing keeps
 * the newest, and a snapshot from a node that keeps more is cut to the newest. */
static void test_event_ring_size(void **state)
{
    (void)state;
    us_state *s = new_state();
    assert_int_equal(us_state_set_events_max(s, US_EVENTS_MIN - 1), -1);
    assert_int_equal(us_state_set_events_max(s, US_EVENTS_LIMIT + 1), -1);
    assert_int_equal(s->events_max, 0);
    assert_int_equal(us_state_set_events_max(s, 16), 0);
    add_events(s, 1, 16);
    assert_kept(s, 16, 16);
    add_events(s, 17, 40); /* wraps one and a half times */
    assert_kept(s, 40, 16);
    /* Growing keeps all there is, then fills up to the new size. */
    assert_int_equal(us_state_set_events_max(s, 20), 0);
    assert_kept(s, 40, 16);
    add_events(s, 41, 50);
    assert_kept(s, 50, 20);
    /* Shrinking keeps the newest. */
    assert_int_equal(us_state_set_events_max(s, 17), 0);
    assert_kept(s, 50, 17);
    add_events(s, 51, 53);
    assert_kept(s, 53, 17);

    /* A snapshot of 17 events read by a node that keeps 16: the newest 16. */
    json_t *j = us_state_to_json(s);
    assert_int_equal(json_array_size(json_object_get(j, "events")), 17);
    us_state *small = new_state();
    assert_int_equal(us_state_set_events_max(small, 16), 0);
    assert_int_equal(us_state_from_json(small, j), 0);
    assert_int_equal(small->events_max, 16);
    assert_kept(small, 53, 16);
    /* ... and by one that keeps more: all 17. */
    us_state *big = new_state();
    assert_int_equal(us_state_from_json(big, j), 0);
    assert_int_equal(big->events_max, 0);
    assert_kept(big, 53, 17);
    assert_true(same_state(s, copy_state(s)));

    /* Out of order, a gap, a duplicate, more events than seqs, or more than US_EVENTS_LIMIT:
     * refused, and the state is unchanged. */
    us_state *before = copy_state(small);
    json_t *ev = json_object_get(j, "events");
    json_t *bad = json_deep_copy(j);
    json_array_remove(json_object_get(bad, "events"), 3); /* a gap */
    assert_int_equal(us_state_from_json(small, bad), -1);
    json_decref(bad);
    bad = json_deep_copy(j);
    json_array_append(json_object_get(bad, "events"), json_array_get(ev, 16)); /* a duplicate */
    assert_int_equal(us_state_from_json(small, bad), -1);
    json_decref(bad);
    bad = json_deep_copy(j);
    json_t *first = json_incref(json_array_get(json_object_get(bad, "events"), 0));
    json_array_remove(json_object_get(bad, "events"), 0);
    json_array_append_new(json_object_get(bad, "events"), first); /* out of order */
    assert_int_equal(us_state_from_json(small, bad), -1);
    json_decref(bad);
    bad = json_deep_copy(j);
    json_object_set_new(bad, "event_seq", json_integer(10)); /* 17 events, seqs up to 10 */
    assert_int_equal(us_state_from_json(small, bad), -1);
    json_decref(bad);
    bad = json_deep_copy(j);
    json_t *many = json_array();
    for (int k = 0; k <= US_EVENTS_LIMIT; k++)
        json_array_append(many, json_array_get(ev, 0));
    json_object_set_new(bad, "events", many);
    json_object_set_new(bad, "event_seq", json_integer(US_EVENTS_LIMIT + 5));
    assert_int_equal(us_state_from_json(small, bad), -1);
    json_decref(bad);
    json_decref(j);
    assert_true(same_state(before, small));
}

/* Every row of service.c is replicated: a definition that differs from the defaults in that one
 * field comes back from its JSON form unchanged. A new row whose value does not survive the
 * state fails here (a new list row needs a sample value below). */
static void set_sample(us_service_def *d, const us_service_field *f)
{
    char *p = (char *)d + f->offset;
    switch (f->type) {
    case US_FIELD_STRING:
    case US_FIELD_COMMAND:
        us_strlcpy(p, "ab", f->size);
        break;
    case US_FIELD_INT:
    case US_FIELD_MS:
        *(int *)(void *)p =
            f->type == US_FIELD_INT && f->def + 1 > f->max ? (int)f->def - 1 : (int)f->def + 1;
        break;
    case US_FIELD_BOOL:
        *(bool *)p = !f->def;
        break;
    case US_FIELD_ENUM:
        *(int *)(void *)p = f->names[f->def + 1] ? (int)f->def + 1 : 0;
        break;
    case US_FIELD_SIZE:
        *(int64_t *)(void *)p = f->def + 1;
        break;
    case US_FIELD_LIST:
        if (strcmp(f->json, "nodes") == 0) {
            d->n_nodes = 2;
            us_strlcpy(d->nodes[0], "n2", US_NAME_MAX);
            us_strlcpy(d->nodes[1], "n1", US_NAME_MAX);
        } else if (strcmp(f->json, "vips") == 0) {
            d->n_vips = 1;
            d->vips[0] = (us_vip){.family = AF_INET6, .prefix = 64, .dev = "eth0"};
            d->vips[0].addr[0] = 0x20;
            d->vips[0].addr[15] = 1;
            us_strlcpy(d->vips[0].text, "2000::1/64 dev eth0", sizeof d->vips[0].text);
        } else if (strcmp(f->json, "checks") == 0) {
            d->n_checks = 1;
            d->checks[0].kind = US_CHECK_TCP;
            us_strlcpy(d->checks[0].text, "tcp://127.0.0.1:5432", US_CMD_MAX);
            us_strlcpy(d->checks[0].host, "127.0.0.1", US_ADDR_MAX);
            d->checks[0].port = 5432;
        } else if (strcmp(f->json, "env") == 0) {
            d->n_env = 1;
            us_strlcpy(d->env[0], "A=b c", US_ENV_MAX);
        } else {
            fail_msg("list row '%s': add a sample value to set_sample()", f->json);
        }
        break;
    }
}

static void test_every_service_field_roundtrips(void **state)
{
    (void)state;
    us_service_def *def = track(calloc(1, sizeof *def)), *d = track(calloc(1, sizeof *d)),
                   *back = track(calloc(1, sizeof *back));
    us_service_defaults(def);
    us_strlcpy(def->name, "web", sizeof def->name);
    assert_true(us_service_n_fields <= US_SERVICE_FIELDS_MAX);
    for (int i = 0; i < us_service_n_fields; i++) {
        const us_service_field *f = &us_service_fields[i];
        assert_non_null(f->json);
        for (int k = 0; k < i; k++) {
            if (strcmp(us_service_fields[k].json, f->json) == 0)
                fail_msg("rows %d and %d share the JSON member '%s'", k, i, f->json);
            if (f->key && us_service_fields[k].key && strcmp(us_service_fields[k].key, f->key) == 0)
                fail_msg("rows %d and %d share the key '%s'", k, i, f->key);
        }
        if (f->key)
            assert_ptr_equal(us_service_field_by_key(f->key), f);
        *d = *def;
        set_sample(d, f);
        if (strcmp(f->json, "name") == 0)
            us_strlcpy(d->name, "other", sizeof d->name);
        if (memcmp(d, def, sizeof *d) == 0)
            fail_msg("row '%s': the sample value is the default", f->json);
        json_t *j = us_service_def_to_json(d);
        if (us_service_def_from_json(back, j) != 0 || memcmp(d, back, sizeof *d) != 0)
            fail_msg("row '%s' does not survive the replicated form", f->json);
        /* Older states (every member, no "v") without the member: 0 (or, where marked, the
         * default). */
        if (strcmp(f->json, "name") != 0) {
            json_object_del(j, f->json);
            json_object_del(j, "v");
            assert_int_equal(us_service_def_from_json(back, j), 0);
            *d = *def;
            us_strlcpy(d->name, "other", sizeof d->name);
            if (!(f->flags & US_FIELD_JSON_DEFAULT))
                memset((char *)d + f->offset, 0, f->size);
            char *mine = (char *)d + f->offset, *got = (char *)back + f->offset;
            if (f->type != US_FIELD_LIST && memcmp(mine, got, f->size) != 0)
                fail_msg("row '%s': an absent member reads wrong", f->json);
        }
        json_decref(j);
    }
}

/* A definition's JSON is "v": 2, its name and its members that are not at their default: a
 * default definition with a run command carries just those three, and reads back byte for byte;
 * a member at a non-default value (0 where the default is not, false where it is true) is kept. */
static void test_service_json_leaves_out_what_reads_back_absent(void **state)
{
    (void)state;
    us_service_def *d = track(calloc(1, sizeof *d)), *back = track(calloc(1, sizeof *back));
    us_service_defaults(d);
    us_strlcpy(d->name, "web", sizeof d->name);
    us_strlcpy(d->run, "exec sleep 1", sizeof d->run);
    json_t *j = us_service_def_to_json(d);
    assert_int_equal(us_service_def_from_json(back, j), 0);
    assert_memory_equal(d, back, sizeof *d);
    assert_int_equal(json_object_size(j), 3);
    assert_int_equal(json_integer_value(json_object_get(j, "v")), 2);
    assert_string_equal(json_string_value(json_object_get(j, "name")), "web");
    assert_string_equal(json_string_value(json_object_get(j, "run")), "exec sleep 1");
    json_decref(j);
    /* Values that an older reader would take for absent are still written when not default. */
    d->hook_timeout_ms = 0; /* default 10000 */
    d->announce_count = 0;  /* default 3 */
    j = us_service_def_to_json(d);
    assert_int_equal(json_object_size(j), 5);
    assert_int_equal(us_service_def_from_json(back, j), 0);
    assert_memory_equal(d, back, sizeof *d);
    json_decref(j);
    /* Without "v" (an older agent's object), an absent number reads as 0. */
    j = json_pack("{s:s, s:s}", "name", "web", "run", "x");
    assert_int_equal(us_service_def_from_json(back, j), 0);
    assert_int_equal(back->hook_timeout_ms, 0);
    json_object_set_new(j, "v", json_integer(2));
    assert_int_equal(us_service_def_from_json(back, j), 0);
    assert_int_equal(back->hook_timeout_ms, 10000);
    json_decref(j);
}

/* user, group, env, log_max, log_keep survive the state; older states get the log defaults. */
static void test_privilege_fields_roundtrip(void **state)
{
    (void)state;
    us_service_def *d = track(calloc(1, sizeof *d)), *d2 = track(calloc(1, sizeof *d2));
    mk_svc(d, "web");
    us_strlcpy(d->user, "www-data", US_USER_MAX);
    us_strlcpy(d->group, "web", US_USER_MAX);
    d->n_env = 2;
    us_strlcpy(d->env[0], "A=1", US_ENV_MAX);
    us_strlcpy(d->env[1], "B=two words", US_ENV_MAX);
    d->log_max = (int64_t)3 << 30;
    d->log_keep = 7;
    json_t *j = us_service_def_to_json(d);
    assert_int_equal(us_service_def_from_json(d2, j), 0);
    assert_memory_equal(d, d2, sizeof *d);
    json_object_del(j, "log_max");
    json_object_del(j, "log_keep");
    json_object_del(j, "env");
    json_object_del(j, "user");
    assert_int_equal(us_service_def_from_json(d2, j), 0);
    assert_int_equal(d2->log_max, US_LOG_MAX_DEFAULT);
    assert_int_equal(d2->log_keep, US_LOG_KEEP_DEFAULT);
    assert_int_equal(d2->n_env, 0);
    assert_string_equal(d2->user, "");
    json_t *many = json_array();
    for (int i = 0; i <= US_MAX_ENV; i++)
        json_array_append_new(many, json_string("K=v"));
    json_object_set_new(j, "env", many);
    assert_int_equal(us_service_def_from_json(d2, j), -1); /* too many */
    json_decref(j);
}

static void test_self_healing_fields_roundtrip(void **state)
{
    (void)state;
    us_service_def *d = track(calloc(1, sizeof *d)), *d2 = track(calloc(1, sizeof *d2));
    mk_svc(d, "web");
    d->n_checks = 2;
    d->checks[0].kind = US_CHECK_HTTP;
    us_strlcpy(d->checks[0].text, "http://127.0.0.1:8080/healthz", US_CMD_MAX);
    us_strlcpy(d->checks[0].host, "127.0.0.1", US_ADDR_MAX);
    d->checks[0].port = 8080;
    us_strlcpy(d->checks[0].path, "/healthz", US_PATH_MAX);
    d->checks[1].kind = US_CHECK_EXEC;
    us_strlcpy(d->checks[1].text, "exec:./check.sh", US_CMD_MAX);
    d->check_interval_ms = 500;
    d->check_timeout_ms = 300;
    d->rise = 2;
    d->fall = 3;
    d->check_status_min = 200;
    d->check_status_max = 399;
    d->check_grace_ms = 1000;
    d->on_failure = US_ON_FAILURE_RESTART;
    d->restart_backoff_min_ms = 200;
    d->restart_backoff_max_ms = 30000;
    d->max_restarts = 3;
    d->restart_window_ms = 60000;
    d->failure_threshold = 4;
    d->failure_window_ms = 600000;
    d->failure_cooldown_ms = 300000;
    d->min_failover_interval_ms = 5000;
    d->failback = true;
    json_t *j = us_service_def_to_json(d);
    assert_int_equal(us_service_def_from_json(d2, j), 0);
    /* The exec command is read from the text, and still written for readers that keep it. */
    json_t *ck = json_array_get(json_object_get(j, "checks"), 1);
    assert_string_equal(json_string_value(json_object_get(ck, "cmd")), "./check.sh");
    assert_string_equal(us_check_cmd(&d2->checks[1]), "./check.sh");
    assert_string_equal(us_check_cmd(&d2->checks[0]), "");
    json_decref(j);
    assert_memory_equal(d, d2, sizeof *d);

    us_state *s = base_state();
    us_assignment a = next_asg(s, "web", 1, "n1", "n2", "x");
    a.recover = true;
    us_strlcpy(a.restart_node, "n3", US_NAME_MAX);
    a.restart_at_ms = 1700000000999;
    a.restarts = 2;
    a.restart_window_ms = 1700000000000;
    a.last_failover_ms = 1699999999999;
    a.n_fail = 1;
    us_strlcpy(a.fail[0].node, "n1", US_NAME_MAX);
    a.fail[0].failures = 2;
    a.fail[0].window_ms = 1;
    a.fail[0].last_ms = 2;
    a.fail[0].banned_until_ms = 1700000600000;
    assert_int_equal(apply(s, us_cmd_assign(&a)), US_APPLY_OK);
    j = us_state_to_json(s);
    us_state *back = new_state();
    assert_int_equal(us_state_from_json(back, j), 0);
    json_decref(j);
    const us_assignment *x = asg_of(back, "web");
    assert_true(x->recover);
    assert_string_equal(x->restart_node, "n3");
    assert_true(x->restart_at_ms == 1700000000999);
    assert_int_equal(x->restarts, 2);
    assert_true(x->last_failover_ms == 1699999999999);
    assert_int_equal(x->n_fail, 1);
    assert_true(x->fail[0].banned_until_ms == 1700000600000);
}

/* ---- services ---- */

static void test_services_add_keep_delete(void **state)
{
    (void)state;
    us_state *s = base_state();
    assert_int_equal(s->services.n, 2);
    assert_string_equal(s->services.svc[0].name, "web");
    assert_string_equal(s->services.svc[1].name, "db");
    for (int i = 0; i < 2; i++) {
        assert_string_equal(s->asg[i].service, s->services.svc[i].name);
        assert_int_equal(s->asg[i].gen, 0);
        assert_int_equal(s->asg[i].epoch, 0);
        assert_string_equal(s->asg[i].active, "");
        assert_int_equal(s->asg[i].n_standbys, 0);
    }
    assert_string_equal(s->services.svc[0].run, "exec /usr/bin/web --serve");
    assert_int_equal(s->services.svc[0].hook_timeout_ms, 10000);

    us_assignment a = next_asg(s, "web", 3, "n1", "n2", "initial placement");
    assert_int_equal(apply(s, us_cmd_assign(&a)), US_APPLY_OK);

    /* Keep web (with a changed definition, at a new position), keep db, add cache. */
    us_service_set *set = mk_set("db cache web");
    us_strlcpy(set->svc[2].run, "exec /usr/bin/web --port 81", US_CMD_MAX);
    set->svc[2].n_nodes = 2;
    us_strlcpy(set->svc[2].nodes[0], "n2", US_NAME_MAX);
    us_strlcpy(set->svc[2].nodes[1], "n1", US_NAME_MAX);
    assert_int_equal(apply(s, us_cmd_services(set)), US_APPLY_OK);
    assert_int_equal(s->services.n, 3);
    assert_int_equal(us_state_find_service(s, "web"), 2);
    assert_string_equal(s->services.svc[2].run, "exec /usr/bin/web --port 81");
    assert_int_equal(s->services.svc[2].n_nodes, 2);
    assert_string_equal(s->services.svc[2].nodes[0], "n2");
    const us_assignment *w = asg_of(s, "web");
    assert_string_equal(w->service, "web");
    assert_int_equal(w->gen, 1);
    assert_int_equal(w->epoch, 3);
    assert_string_equal(w->active, "n1");
    assert_int_equal(w->n_standbys, 1);
    assert_string_equal(w->standbys[0], "n2");
    assert_int_equal(asg_of(s, "cache")->epoch, 0);
    assert_int_equal(asg_of(s, "cache")->gen, 0);
    assert_string_equal(asg_of(s, "cache")->service, "cache");
    for (int i = 0; i < s->services.n; i++)
        assert_string_equal(s->asg[i].service, s->services.svc[i].name);

    /* Delete web and db. */
    assert_int_equal(apply_services(s, "cache"), US_APPLY_OK);
    assert_int_equal(s->services.n, 1);
    assert_int_equal(us_state_find_service(s, "web"), -1);
    assert_int_equal(us_state_find_service(s, "db"), -1);
    assert_string_equal(s->asg[0].service, "cache");

    /* Re-added web continues its epoch (fencing tokens never repeat) but starts idle. */
    assert_int_equal(apply_services(s, "cache web"), US_APPLY_OK);
    w = asg_of(s, "web");
    assert_int_equal(w->epoch, 3);
    assert_string_equal(w->active, "");
    assert_int_equal(w->n_standbys, 0);
    a = next_asg(s, "web", 2, "n3", "", "epoch going back");
    assert_int_equal(apply(s, us_cmd_assign(&a)), US_APPLY_BAD);
    a = next_asg(s, "web", 4, "n3", "", "placement after re-add");
    assert_int_equal(apply(s, us_cmd_assign(&a)), US_APPLY_OK);

    /* Delete and re-add again: the retired record follows the newest epoch. */
    assert_int_equal(apply_services(s, "cache"), US_APPLY_OK);
    assert_int_equal(apply_services(s, "web cache"), US_APPLY_OK);
    assert_int_equal(asg_of(s, "web")->epoch, 4);
    assert_int_equal(asg_of(s, "web")->gen, 0);
}

/* A command that keeps every service in its place and adds some after them is applied in place
 * (fsm.c): the changed definition is overwritten, the new ones appended with their start epochs,
 * assignments and statistics kept, one event per change in order; a bad or repeated name
 * anywhere in such a command changes nothing. */
static void test_services_in_place(void **state)
{
    (void)state;
    us_state *s = base_state();
    us_assignment a = next_asg(s, "web", 3, "n1", "n2", "initial placement");
    assert_int_equal(apply(s, us_cmd_assign(&a)), US_APPLY_OK);
    us_service_def *web = &s->services.svc[0], *db = &s->services.svc[1];
    uint64_t q0 = s->event_seq, v0 = s->version;

    us_service_set *set = mk_set("web db cache api");
    memset(set->svc[1].run, 0, US_CMD_MAX); /* as the replicated form reads it back */
    us_strlcpy(set->svc[1].run, "exec /usr/bin/db --new", US_CMD_MAX);
    assert_int_equal(apply(s, us_cmd_services(set)), US_APPLY_OK);
    assert_int_equal(s->version, v0 + 1);
    assert_int_equal(s->services.n, 4);
    web = &s->services.svc[0];
    db = &s->services.svc[1];
    assert_string_equal(web->name, "web");
    assert_string_equal(db->run, "exec /usr/bin/db --new");
    assert_int_equal(us_state_find_service(s, "cache"), 2);
    assert_int_equal(us_state_find_service(s, "api"), 3);
    for (int i = 0; i < s->services.n; i++) {
        assert_string_equal(s->asg[i].service, s->services.svc[i].name);
        assert_memory_equal(&s->services.svc[i], &set->svc[i], sizeof set->svc[i]);
    }
    const us_assignment *w = asg_of(s, "web");
    assert_int_equal(w->epoch, 3);
    assert_string_equal(w->active, "n1");
    assert_int_equal(asg_of(s, "cache")->epoch, 0);
    assert_string_equal(asg_of(s, "api")->active, "");
    assert_int_equal(s->event_seq, q0 + 3);
    static const char *const expect[][2] = {
        {"db", "changed"}, {"cache", "defined"}, {"api", "defined"}};
    for (int i = 0; i < 3; i++) {
        const us_event *e = us_state_event(s, q0 + 1 + (uint64_t)i);
        assert_string_equal(e->service, expect[i][0]);
        assert_string_equal(e->to, expect[i][1]);
    }
    assert_int_equal(apply(s, us_cmd_services(set)), US_APPLY_NOOP);

    /* Refused whole: an old name again, a new name twice, a bad new definition, a bad changed
     * one. */
    us_state *before = copy_state(s);
    static const char *const bad[] = {
        "{\"op\": \"services\", \"services\": [{\"name\": \"web\"}, {\"name\": \"db\"}, "
        "{\"name\": \"cache\"}, {\"name\": \"api\"}, {\"name\": \"db\"}]}",
        "{\"op\": \"services\", \"services\": [{\"name\": \"web\"}, {\"name\": \"db\"}, "
        "{\"name\": \"cache\"}, {\"name\": \"api\"}, {\"name\": \"x\"}, {\"name\": \"x\"}]}",
        "{\"op\": \"services\", \"services\": [{\"name\": \"web\"}, {\"name\": \"db\"}, "
        "{\"name\": \"cache\"}, {\"name\": \"api\"}, {\"name\": \"y\", \"nodes\": [1]}]}",
        "{\"op\": \"services\", \"services\": [{\"name\": \"web\", \"env\": [2]}, "
        "{\"name\": \"db\"}, {\"name\": \"cache\"}, {\"name\": \"api\"}]}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(apply_text(s, bad[i]), US_APPLY_BAD);
        assert_unchanged(before, s);
    }
}

static void test_services_same_set_twice_is_noop(void **state)
{
    (void)state;
    us_state *s = base_state();
    us_assignment a = next_asg(s, "db", 1, "n2", "n1", "placement");
    assert_int_equal(apply(s, us_cmd_assign(&a)), US_APPLY_OK);
    us_state *before = copy_state(s);
    assert_int_equal(apply_services(s, "web db"), US_APPLY_NOOP);
    assert_unchanged(before, s);
    assert_int_equal(apply_services(s, "db web"), US_APPLY_OK); /* order is preference */
    assert_int_equal(apply_services(s, "db web"), US_APPLY_NOOP);
    assert_int_equal(s->version, before->version + 1);
    assert_int_equal(asg_of(s, "db")->gen, 1);
    assert_string_equal(asg_of(s, "db")->active, "n2");
}

static void test_services_empty_set_deletes_all(void **state)
{
    (void)state;
    us_state *s = base_state();
    assert_int_equal(apply_services(s, ""), US_APPLY_OK);
    assert_int_equal(s->services.n, 0);
    assert_int_equal(s->n_retired, 0); /* never active (epoch 0): nothing to remember */
    assert_int_equal(apply_services(s, ""), US_APPLY_NOOP);
}

static void test_services_bad(void **state)
{
    (void)state;
    us_state *s = base_state();
    us_state *before = copy_state(s);
    assert_int_equal(apply_text(s, "{\"op\": \"services\"}"), US_APPLY_BAD);
    assert_int_equal(apply_text(s, "{\"op\": \"services\", \"services\": {}}"), US_APPLY_BAD);
    assert_int_equal(apply_text(s, "{\"op\": \"services\", \"services\": [{\"name\": \"Web\"}]}"),
                     US_APPLY_BAD);
    assert_int_equal(apply_text(s, "{\"op\": \"services\", \"services\": [\"web\"]}"),
                     US_APPLY_BAD);
    /* A bad entry after good ones must not half-apply. */
    assert_int_equal(apply_text(s, "{\"op\": \"services\", \"services\": [{\"name\": \"x1\"}, "
                                   "{\"name\": \"x2\", \"nodes\": [1]}]}"),
                     US_APPLY_BAD);

    us_service_set *set = mk_set("a b");
    set->svc[1].n_nodes = US_MAX_NODES;
    for (int i = 0; i < US_MAX_NODES; i++)
        snprintf(set->svc[1].nodes[i], US_NAME_MAX, "n%d", i);
    json_t *cmd = us_cmd_services(set);
    json_array_append_new(
        json_object_get(json_array_get(json_object_get(cmd, "services"), 1), "nodes"),
        json_string("n99")); /* US_MAX_NODES + 1 eligible nodes */
    assert_int_equal(apply(s, cmd), US_APPLY_BAD);

    cmd = us_cmd_services(set);
    json_t *arr = json_object_get(cmd, "services");
    for (int i = 0; i < US_MAX_SERVICES - 1; i++) {
        char name[16];
        snprintf(name, sizeof name, "s%d", i);
        json_array_append_new(arr, json_pack("{s:s}", "name", name));
    }
    assert_int_equal(json_array_size(arr), US_MAX_SERVICES + 1);
    assert_int_equal(apply(s, cmd), US_APPLY_BAD);
    assert_unchanged(before, s);
}

/* fsm.h: "Epochs only grow, also across deleting and re-adding a service of the same name." The
 * retired list holds US_RETIRED_MAX names; the promise must hold after more deletions than that. */
static void test_services_epoch_survives_retired_overflow(void **state)
{
    (void)state;
    us_state *s = base_state();
    us_assignment a = next_asg(s, "web", 5, "n1", "", "placement");
    assert_int_equal(apply(s, us_cmd_assign(&a)), US_APPLY_OK);
    assert_int_equal(apply_services(s, "db"), US_APPLY_OK); /* web retired at epoch 5 */
    char names[64];
    for (int i = 0; i < US_RETIRED_MAX; i++) {
        snprintf(names, sizeof names, "db tmp%d", i);
        assert_int_equal(apply_services(s, names), US_APPLY_OK);
        assert_int_equal(apply_services(s, "db"), US_APPLY_OK);
    }
    assert_true(s->n_retired <= US_RETIRED_MAX);
    assert_int_equal(apply_services(s, "db web"), US_APPLY_OK);
    assert_true(asg_of(s, "web")->epoch >= 5);
}

/* ---- assign ---- */

static void test_assign_cas(void **state)
{
    (void)state;
    us_state *s = base_state();
    uint64_t v = s->version;
    us_assignment a = next_asg(s, "web", 1, "n1", "n2", "initial placement on n1");
    json_t *cmd = us_cmd_assign(&a);
    assert_int_equal(us_state_apply(s, cmd), US_APPLY_OK);
    const us_assignment *w = asg_of(s, "web");
    assert_int_equal(w->gen, 1);
    assert_int_equal(w->epoch, 1);
    assert_string_equal(w->active, "n1");
    assert_int_equal(w->active_inc, 7);
    assert_int_equal(w->n_standbys, 1);
    assert_string_equal(w->standbys[0], "n2");
    assert_string_equal(w->reason, "initial placement on n1");
    assert_int_equal(s->version, v + 1);
    assert_int_equal(asg_of(s, "db")->gen, 0); /* the other service is untouched */

    /* The same command again (a LEADERSHIPLOST retry that had committed): no-op. */
    us_state *before = copy_state(s);
    assert_int_equal(us_state_apply(s, cmd), US_APPLY_NOOP);
    json_decref(cmd);
    assert_unchanged(before, s);

    /* A decision made on the old gen is dropped, whatever it says. */
    us_assignment stale = a;
    stale.epoch = 9;
    us_strlcpy(stale.active, "n3", sizeof stale.active);
    assert_int_equal(apply(s, us_cmd_assign(&stale)), US_APPLY_NOOP);
    stale.gen = 7; /* from the future: also not the current gen */
    assert_int_equal(apply(s, us_cmd_assign(&stale)), US_APPLY_NOOP);
    us_assignment unknown = a;
    us_strlcpy(unknown.service, "mail", sizeof unknown.service);
    assert_int_equal(apply(s, us_cmd_assign(&unknown)), US_APPLY_NOOP);
    assert_unchanged(before, s);

    /* Current gen but an epoch going back: rejected. */
    us_assignment back = next_asg(s, "web", 0, "n3", "", "back");
    assert_int_equal(apply(s, us_cmd_assign(&back)), US_APPLY_BAD);
    assert_unchanged(before, s);

    /* Same epoch (standby change) and larger epochs are fine; gen bumps by one each time. */
    us_assignment same = next_asg(s, "web", 1, "n1", "n3", "standby n2 dropped; n3 added");
    assert_int_equal(apply(s, us_cmd_assign(&same)), US_APPLY_OK);
    assert_int_equal(asg_of(s, "web")->gen, 2);
    us_assignment up = next_asg(s, "web", 2, "n3", "", "n3 promoted");
    assert_int_equal(apply(s, us_cmd_assign(&up)), US_APPLY_OK);
    assert_int_equal(asg_of(s, "web")->gen, 3);
    assert_int_equal(asg_of(s, "web")->epoch, 2);
    assert_int_equal(asg_of(s, "web")->n_standbys, 0);
    assert_int_equal(s->version, v + 3);
}

/* since_version (lease.h): set when the active role is given (a new epoch) or renewed (R9), kept
 * otherwise; `renew` travels in the command only, and is ignored unless the holder stays. */
static void test_assign_since_version_and_renew(void **state)
{
    (void)state;
    us_state *s = base_state();
    us_assignment a = next_asg(s, "web", 1, "n1", "n2", "initial placement on n1");
    assert_int_equal(apply(s, us_cmd_assign(&a)), US_APPLY_OK);
    uint64_t given = s->version;
    assert_int_equal(asg_of(s, "web")->since_version, given);
    /* A standby change: the role's version stays. */
    us_assignment same = next_asg(s, "web", 1, "n1", "n3", "standby n2 dropped; n3 added");
    assert_int_equal(apply(s, us_cmd_assign(&same)), US_APPLY_OK);
    assert_int_equal(asg_of(s, "web")->since_version, given);
    /* A renewal: same holder, same epoch, the role counts as given now; not kept in the state. */
    us_assignment renew = next_asg(s, "web", 1, "n1", "n3", "standby n2 dropped; n3 added");
    renew.renew = true;
    json_t *cmd = us_cmd_assign(&renew);
    assert_true(json_is_true(json_object_get(json_object_get(cmd, "asg"), "renew")));
    assert_int_equal(apply(s, cmd), US_APPLY_OK);
    assert_int_equal(asg_of(s, "web")->since_version, s->version);
    assert_true(asg_of(s, "web")->since_version > given);
    assert_false(asg_of(s, "web")->renew);
    json_t *j = us_assignment_to_json(asg_of(s, "web"));
    assert_null(json_object_get(j, "renew"));
    json_decref(j);
    uint64_t renewed = s->version;
    /* renew with another holder is a new role anyway (new epoch); with no holder, nothing. */
    us_assignment none = next_asg(s, "web", 1, "", "n3", "n1 confirmed demotion");
    none.renew = true;
    assert_int_equal(apply(s, us_cmd_assign(&none)), US_APPLY_OK);
    assert_int_equal(asg_of(s, "web")->since_version, renewed);
}

static void test_assign_bad(void **state)
{
    (void)state;
    us_state *s = base_state();
    us_state *before = copy_state(s);
    assert_int_equal(apply_text(s, "{\"op\": \"assign\"}"), US_APPLY_BAD);
    assert_int_equal(apply_text(s, "{\"op\": \"assign\", \"asg\": 3}"), US_APPLY_BAD);
    us_assignment a = next_asg(s, "web", 1, "n1", "", "x");
    json_t *cmd = us_cmd_assign(&a);
    json_t *sb = json_object_get(json_object_get(cmd, "asg"), "standbys");
    for (int i = 0; i <= US_MAX_NODES; i++)
        json_array_append_new(sb, json_string("n2"));
    assert_int_equal(apply(s, cmd), US_APPLY_BAD);
    assert_unchanged(before, s);
}

/* ---- switchover ---- */

static void test_switchover(void **state)
{
    (void)state;
    us_state *s = base_state();
    us_state *before = copy_state(s);
    /* No active: nothing to switch over. */
    assert_int_equal(apply(s, us_cmd_switchover("web", 0, "n2")), US_APPLY_NOOP);
    assert_int_equal(apply(s, us_cmd_switchover("mail", 0, "n2")), US_APPLY_NOOP);
    assert_unchanged(before, s);

    us_assignment a = next_asg(s, "web", 4, "n1", "n2", "placement");
    assert_int_equal(apply(s, us_cmd_assign(&a)), US_APPLY_OK);
    before = copy_state(s);
    assert_int_equal(apply(s, us_cmd_switchover("web", 0, "n2")), US_APPLY_NOOP); /* stale */
    assert_unchanged(before, s);

    json_t *cmd = us_cmd_switchover("web", 1, "n3");
    assert_int_equal(us_state_apply(s, cmd), US_APPLY_OK);
    const us_assignment *w = asg_of(s, "web");
    assert_true(w->demoting);
    assert_string_equal(w->target, "n3");
    assert_non_null(strstr(w->reason, "switchover"));
    assert_non_null(strstr(w->reason, "n3"));
    assert_int_equal(w->gen, 2);
    assert_int_equal(w->epoch, 4);        /* the role is not handed over yet */
    assert_string_equal(w->active, "n1"); /* until the holder confirms */
    assert_int_equal(w->n_standbys, 1);
    assert_int_equal(s->version, before->version + 1);
    /* Retried: no-op. */
    assert_int_equal(us_state_apply(s, cmd), US_APPLY_NOOP);
    json_decref(cmd);
    assert_int_equal(w->gen, 2);

    /* A new request without target (best candidate) replaces the target. */
    assert_int_equal(apply(s, us_cmd_switchover("web", 2, NULL)), US_APPLY_OK);
    assert_string_equal(w->target, "");
    assert_true(w->demoting);
    assert_string_equal(w->reason, "switchover requested");
    assert_int_equal(w->gen, 3);
}

/* ---- replicated counters (us_service_stats) ---- */

static const us_service_stats *stats_of(const us_state *s, const char *service)
{
    int i = us_state_find_service(s, service);
    if (i < 0)
        fail_msg("service %s not in the state", service);
    return &s->stats[i];
}

/* Commit the next assignment of `web` (gen = current), with optional restart_node/recover and
 * the decision's release kind (the reason is for the reader: the counters go by the kind). */
static void step(us_state *s, uint64_t epoch, const char *active, const char *restart_node,
                 bool recover, us_release_kind release, const char *reason)
{
    us_assignment a = next_asg(s, "web", epoch, active, "", reason);
    us_strlcpy(a.restart_node, restart_node, sizeof a.restart_node);
    a.recover = recover;
    a.release = release;
    a.demoting = false; /* as decide.c's give_role: every pending step of the old epoch clears */
    a.target[0] = '\0';
    assert_int_equal(apply(s, us_cmd_assign(&a)), US_APPLY_OK);
}

static void assert_counts(const us_state *s, uint64_t failed, uint64_t unhealthy, uint64_t fenced,
                          uint64_t lease, uint64_t agent, uint64_t other, uint64_t switchovers,
                          uint64_t restarts)
{
    const us_service_stats *st = stats_of(s, "web");
    uint64_t want[US_CAUSE_N] = {failed, unhealthy, fenced, lease, agent, other};
    for (int c = 0; c < US_CAUSE_N; c++)
        if (st->failovers[c] != want[c])
            fail_msg("failovers{cause=%s} = %llu, expected %llu",
                     us_move_cause_name((us_move_cause)c), (unsigned long long)st->failovers[c],
                     (unsigned long long)want[c]);
    assert_int_equal(st->switchovers, switchovers);
    assert_int_equal(st->restarts_in_place, restarts);
}

static void test_move_counters(void **state)
{
    (void)state;
    us_state *s = base_state();
    step(s, 1, "n1", "", false, US_RELEASE_NONE,
         "initial placement on n1 (first eligible in preference order)");
    assert_counts(s, 0, 0, 0, 0, 0, 0, 0, 0); /* a placement is no move */

    /* Released and given to another node in one decision. */
    step(s, 2, "n2", "", false, US_RELEASE_FAILED,
         "instance on n1 failed (exit status 137); n2 promoted (standby)");
    assert_counts(s, 1, 0, 0, 0, 0, 0, 0, 0);
    /* Unhealthy: `recover` first (no move), then the failed report releases the role. */
    step(s, 2, "n2", "", true, US_RELEASE_NONE,
         "n2 unhealthy: check tcp://x failed 3/3: refused: stopping it");
    assert_counts(s, 1, 0, 0, 0, 0, 0, 0, 0);
    step(s, 3, "n3", "", false, US_RELEASE_UNHEALTHY,
         "instance on n2 failed: check tcp://x failed 3/3: refused; n3 promoted (standby)");
    assert_counts(s, 1, 1, 0, 0, 0, 0, 0, 0);

    /* Released by one command, given by a later one: counted when given, under the release's
     * cause, also after a snapshot in between. */
    step(s, 3, "", "", false, US_RELEASE_LEASE,
         "lease of n3 expired (last seen 900 ms ago); no eligible node for the active role");
    assert_counts(s, 1, 1, 0, 0, 0, 0, 0, 0);
    assert_string_equal(stats_of(s, "web")->released_from, "n3");
    json_t *j = us_state_to_json(s);
    us_state *back = new_state();
    assert_int_equal(us_state_from_json(back, j), 0);
    json_decref(j);
    assert_memory_equal(s->stats, back->stats, sizeof s->stats);
    step(back, 4, "n1", "", false, US_RELEASE_NONE,
         "n1 promoted (first eligible in preference order)");
    assert_counts(back, 1, 1, 0, 1, 0, 0, 0, 0);
    assert_string_equal(stats_of(back, "web")->released_from, "");
    s = back;

    step(s, 5, "n2", "", false, US_RELEASE_FENCED,
         "guardian on n1 fenced the instance; n2 promoted (standby)");
    assert_counts(s, 1, 1, 1, 1, 0, 0, 0, 0);

    /* Restart in place: released with a pending restart, given back to the same node. */
    step(s, 5, "", "n2", false, US_RELEASE_FAILED,
         "instance on n2 failed (exit status 1); restart 1/3 on n2 in 200 ms");
    step(s, 6, "n2", "", false, US_RELEASE_NONE, "restart 1/3 on n2 (backoff 200 ms over)");
    assert_counts(s, 1, 1, 1, 1, 0, 0, 0, 1);
    /* A restart abandoned: the role goes elsewhere, a failover of the original cause. */
    step(s, 6, "", "n2", false, US_RELEASE_FAILED,
         "instance on n2 failed (exit status 1); restart 2/3 on n2 in 400 ms");
    step(s, 6, "", "", false, US_RELEASE_NONE, "restart on n2 abandoned (node dead)");
    step(s, 7, "n3", "", false, US_RELEASE_NONE,
         "n3 promoted (first eligible in preference order)");
    assert_counts(s, 2, 1, 1, 1, 0, 0, 0, 1);

    /* A planned switchover: requested, then the holder's demotion confirmed. */
    assert_int_equal(apply(s, us_cmd_switchover("web", asg_of(s, "web")->gen, "n1")), US_APPLY_OK);
    step(s, 8, "n1", "", false, US_RELEASE_SWITCHOVER,
         "switchover: n3 confirmed demotion; n1 promoted (requested target)");
    assert_counts(s, 2, 1, 1, 1, 0, 0, 1, 1);
    /* A holder failing during a switchover fails over. */
    assert_int_equal(apply(s, us_cmd_switchover("web", asg_of(s, "web")->gen, "n2")), US_APPLY_OK);
    step(s, 9, "n2", "", false, US_RELEASE_FAILED,
         "switchover: instance on n1 failed (exit status 9); n2 promoted (requested target)");
    assert_counts(s, 3, 1, 1, 1, 0, 0, 1, 1);

    /* A restarted agent given the role again is a restart in place, elsewhere a failover. */
    step(s, 10, "n2", "", false, US_RELEASE_AGENT,
         "agent on n2 restarted; n2 promoted (first eligible in ...)");
    assert_counts(s, 3, 1, 1, 1, 0, 0, 1, 2);
    step(s, 11, "n3", "", false, US_RELEASE_AGENT,
         "agent on n2 restarted; n3 promoted (first eligible in ...)");
    assert_counts(s, 3, 1, 1, 1, 1, 0, 1, 2);
    /* A demotion nobody asked for (no switchover pending) and an unknown wording: "other". */
    step(s, 12, "n1", "", false, US_RELEASE_DEMOTED,
         "n3 confirmed demotion; n1 promoted (standby)");
    step(s, 13, "n2", "", false, US_RELEASE_OTHER, "something new; n2 promoted (standby)");
    assert_counts(s, 3, 1, 1, 1, 1, 2, 1, 2);
    /* A command written before kinds were recorded (no "release") still applies: "other". */
    us_assignment old = next_asg(s, "web", 14, "n3", "", "instance on n2 failed; n3 promoted");
    old.demoting = false;
    old.target[0] = '\0';
    json_t *cmd = us_cmd_assign(&old);
    json_object_del(json_object_get(cmd, "asg"), "release");
    assert_int_equal(apply(s, cmd), US_APPLY_OK);
    assert_int_equal(asg_of(s, "web")->release, US_RELEASE_OTHER);
    assert_counts(s, 3, 1, 1, 1, 1, 3, 1, 2);

    /* A stale (CAS-failed) decision counts nothing. */
    us_state *before = copy_state(s);
    us_assignment stale = next_asg(s, "web", 15, "n1", "", "instance on n3 failed; n1 promoted");
    stale.gen--;
    assert_int_equal(apply(s, us_cmd_assign(&stale)), US_APPLY_NOOP);
    assert_unchanged(before, s);
    /* Counters follow their service through a services command; a new service starts at 0. */
    uint64_t failed = stats_of(s, "web")->failovers[US_CAUSE_FAILED];
    assert_int_equal(apply_services(s, "mail web"), US_APPLY_OK);
    assert_int_equal(stats_of(s, "web")->failovers[US_CAUSE_FAILED], failed);
    assert_int_equal(stats_of(s, "mail")->failovers[US_CAUSE_FAILED], 0);
    assert_int_equal(stats_of(s, "mail")->switchovers, 0);
    /* Deleted and re-added: counted afresh (a counter reset, as for a restarted process). */
    assert_int_equal(apply_services(s, "mail"), US_APPLY_OK);
    assert_int_equal(apply_services(s, "mail web"), US_APPLY_OK);
    assert_int_equal(stats_of(s, "web")->failovers[US_CAUSE_FAILED], 0);
}

/* A state written before the counters existed loads with counters at 0; a broken one fails. */
static void test_stats_json(void **state)
{
    (void)state;
    us_state *s = base_state();
    step(s, 1, "n1", "", false, US_RELEASE_NONE, "initial placement");
    step(s, 2, "n2", "", false, US_RELEASE_FENCED,
         "guardian on n1 fenced the instance; n2 promoted (standby)");
    json_t *j = us_state_to_json(s);
    json_t *stats = json_object_get(j, "stats");
    assert_int_equal(json_array_size(stats), 2);
    assert_string_equal(
        json_string_value(json_object_get(
            json_object_get(json_array_get(stats, us_state_find_service(s, "web")), "failovers"),
            "fenced")),
        "1");
    us_state *back = new_state();
    json_t *old = json_deep_copy(j);
    json_object_del(old, "stats");
    assert_int_equal(us_state_from_json(back, old), 0);
    json_decref(old);
    assert_int_equal(stats_of(back, "web")->failovers[US_CAUSE_FENCED], 0);
    us_state *before = copy_state(back);
    json_t *bad = json_deep_copy(j);
    json_array_remove(json_object_get(bad, "stats"), 0);
    assert_int_equal(us_state_from_json(back, bad), -1);
    json_object_set_new(bad, "stats", json_string("x"));
    assert_int_equal(us_state_from_json(back, bad), -1);
    json_decref(bad);
    assert_unchanged(before, back);
    json_decref(j);
}

/* The release causes are read from decide.c's words: real decisions, classified. */
typedef struct dec_in {
    us_decide_input base; /* its arrays are these: */
    us_service_def defs[1];
    us_assignment asg[1];
    us_inst_obs inst[1][US_MAX_NODES];
    const us_inst_obs *inst_at[US_MAX_NODES]; /* base.inst: one service, so inst[0][node] */
} dec_in;

static dec_in *decide_input(void)
{
    dec_in *in = track(calloc(1, sizeof *in));
    in->base.defs = in->defs;
    in->base.asg = in->asg;
    for (int n = 0; n < US_MAX_NODES; n++)
        in->inst_at[n] = &in->inst[0][n];
    in->base.inst = in->inst_at;
    in->base.has_quorum = true;
    in->base.now_ms = 1000000;
    us_strlcpy(in->base.leader, "n2", sizeof in->base.leader);
    in->base.n_nodes = 2;
    in->base.nodes[0] = mk_node("n1", 11);
    in->base.nodes[1] = mk_node("n2", 12);
    in->base.n_services = 1;
    mk_svc(&in->defs[0], "web");
    in->defs[0].rise = 1;
    in->defs[0].fall = 1;
    in->defs[0].restart_window_ms = 60000;
    in->defs[0].failure_window_ms = 600000;
    in->defs[0].failure_cooldown_ms = 600000;
    us_assignment *a = &in->asg[0];
    us_strlcpy(a->service, "web", sizeof a->service);
    a->gen = 5;
    a->epoch = 3;
    us_strlcpy(a->active, "n1", sizeof a->active);
    a->active_inc = 11;
    a->n_standbys = 1;
    us_strlcpy(a->standbys[0], "n2", US_NAME_MAX);
    in->inst[0][0] = (us_inst_obs){.state = US_INST_ACTIVE, .epoch = 3};
    in->inst[0][1] = (us_inst_obs){.state = US_INST_STANDBY, .epoch = 3};
    return in;
}

/* The decision's release kind, checked to map to `cause` (what the counters record). */
static us_release_kind decided_release(const dec_in *in, us_move_cause cause)
{
    us_decide_output *out = track(calloc(1, sizeof *out));
    out->d = track(calloc(1, sizeof *out->d));
    us_decide(&in->base, out);
    assert_int_equal(out->n, 1);
    assert_string_equal(out->d[0].next.active, "n2");
    us_release_kind k = out->d[0].next.release;
    assert_int_equal(us_release_cause(k), cause);
    /* The kind survives the command's JSON (it is replicated with the assignment). */
    json_t *j = us_assignment_to_json(&out->d[0].next);
    assert_string_equal(json_string_value(json_object_get(j, "release")), us_release_kind_name(k));
    json_decref(j);
    return k;
}

static void test_release_cause_of_decisions(void **state)
{
    (void)state;
    dec_in *in = decide_input();
    in->inst[0][0] = (us_inst_obs){.state = US_INST_FAILED, .epoch = 3, .exit_status = 137};
    assert_int_equal(decided_release(in, US_CAUSE_FAILED), US_RELEASE_FAILED);
    us_strlcpy(in->inst[0][0].cause, "check tcp://127.0.0.1:1 failed 1/1: refused", US_REASON_MAX);
    in->asg[0].recover = true;
    assert_int_equal(decided_release(in, US_CAUSE_UNHEALTHY), US_RELEASE_UNHEALTHY);

    in = decide_input();
    in->inst[0][0] = (us_inst_obs){.state = US_INST_FENCED, .epoch = 3, .exit_status = 137};
    assert_int_equal(decided_release(in, US_CAUSE_FENCED), US_RELEASE_FENCED);

    in = decide_input();
    in->base.node_obs[0] =
        (us_node_obs){.state = US_NODE_DEAD, .lease = US_LEASE_EXPIRED, .last_seen_ms = 5000};
    assert_int_equal(decided_release(in, US_CAUSE_LEASE), US_RELEASE_LEASE);

    in = decide_input();
    in->base.nodes[0].incarnation = 99; /* the agent on n1 restarted */
    in->base.nodes[0].drained = true;   /* so that it does not get the role straight back */
    assert_int_equal(decided_release(in, US_CAUSE_AGENT_RESTART), US_RELEASE_AGENT);

    in = decide_input();
    in->asg[0].demoting = true;
    in->inst[0][0] = (us_inst_obs){.state = US_INST_DEMOTED, .epoch = 3};
    assert_int_equal(decided_release(in, US_CAUSE_SWITCHOVER), US_RELEASE_SWITCHOVER);

    in = decide_input();
    in->inst[0][0] = (us_inst_obs){.state = US_INST_DEMOTED, .epoch = 3}; /* not asked to */
    assert_int_equal(decided_release(in, US_CAUSE_OTHER), US_RELEASE_DEMOTED);
}

/* Every kind has a name that reads back; absent and unknown names read as OTHER, so commands
 * and snapshots written before kinds were recorded still apply. */
static void test_release_kind_names(void **state)
{
    (void)state;
    for (int k = 0; k < US_RELEASE_N; k++)
        assert_int_equal(us_release_kind_parse(us_release_kind_name((us_release_kind)k)), k);
    assert_int_equal(us_release_kind_parse(NULL), US_RELEASE_OTHER);
    assert_int_equal(us_release_kind_parse("meteorite"), US_RELEASE_OTHER);
    assert_string_equal(us_move_cause_name(us_release_cause(US_RELEASE_AGENT)), "agent_restart");
    assert_string_equal(us_move_cause_name(us_release_cause(US_RELEASE_SWITCHOVER)), "switchover");

    us_state *s = base_state();
    int i = us_state_find_service(s, "web");
    s->asg[i].release = US_RELEASE_LEASE;
    json_t *j = us_state_to_json(s);
    us_state *back = new_state();
    assert_int_equal(us_state_from_json(back, j), 0);
    assert_int_equal(back->asg[i].release, US_RELEASE_LEASE);
    json_object_del(json_array_get(json_object_get(j, "assignments"), (size_t)i), "release");
    assert_int_equal(us_state_from_json(back, j), 0);
    assert_int_equal(back->asg[i].release, US_RELEASE_OTHER);
    json_decref(j);
}

/* ---- version and unknown commands ---- */

static void test_version_only_on_ok(void **state)
{
    (void)state;
    us_state *s = base_state();
    assert_int_equal(s->version, 4);
    us_state *before = copy_state(s);
    assert_int_equal(apply_text(s, "{\"op\": \"reboot\"}"), US_APPLY_BAD);
    assert_int_equal(apply_text(s, "{\"node\": {\"name\": \"n4\"}}"), US_APPLY_BAD);
    assert_int_equal(apply_text(s, "{\"op\": 1}"), US_APPLY_BAD);
    assert_int_equal(apply_text(s, "[\"node_up\"]"), US_APPLY_BAD);
    assert_int_equal(apply_text(s, "\"node_up\""), US_APPLY_BAD);
    assert_int_equal(apply_node(s, "n1", 11), US_APPLY_NOOP);
    assert_int_equal(apply_services(s, "web db"), US_APPLY_NOOP);
    assert_unchanged(before, s);
    assert_int_equal(apply_node(s, "n4", 1), US_APPLY_OK);
    assert_int_equal(s->version, 5);
}

/* ---- whole-state JSON ---- */

static us_state *rich_state(void)
{
    us_state *s = new_state();
    s->version = 0xfedcba9876543210ULL; /* beyond json_int_t: travels as a string */
    s->n_nodes = 3;
    const char *names[] = {"alpha", "n-2", "zz9"};
    for (int i = 0; i < 3; i++) {
        s->nodes[i] = mk_node(names[i], UINT64_MAX - (uint64_t)i);
        s->nodes[i].voter = i != 1;
    }
    s->nodes[1].leaving = true;
    s->nodes[2].removing = true;
    s->nodes[2].left = true;
    assert_int_equal(us_state_reserve(s, 2), 0);
    s->services.n = 2;
    mk_svc(&s->services.svc[0], "web");
    us_strlcpy(s->services.svc[0].promote, "/etc/web/promote \"$UNDERSTUDY_EPOCH\"", US_CMD_MAX);
    us_strlcpy(s->services.svc[0].demote, "/etc/web/demote; echo 'é ✓'", US_CMD_MAX);
    s->services.svc[0].standby = US_STANDBY_HOT;
    s->services.svc[0].standbys = 2;
    s->services.svc[0].n_nodes = 2;
    us_strlcpy(s->services.svc[0].nodes[0], "zz9", US_NAME_MAX);
    us_strlcpy(s->services.svc[0].nodes[1], "alpha", US_NAME_MAX);
    s->services.svc[0].hook_timeout_ms = 1234;
    s->services.svc[0].stop_timeout_ms = 0;
    mk_svc(&s->services.svc[1], "db");
    us_assignment *a = &s->asg[0];
    us_strlcpy(a->service, "web", sizeof a->service);
    a->gen = 42;
    a->epoch = (uint64_t)1 << 63;
    us_strlcpy(a->active, "alpha", sizeof a->active);
    a->active_inc = UINT64_MAX;
    a->demoting = true;
    us_strlcpy(a->target, "zz9", sizeof a->target);
    a->n_standbys = 2;
    us_strlcpy(a->standbys[0], "zz9", US_NAME_MAX);
    us_strlcpy(a->standbys[1], "n-2", US_NAME_MAX);
    us_strlcpy(a->reason, "switchover requested to zz9 \"quoted\"\n", sizeof a->reason);
    us_strlcpy(s->asg[1].service, "db", sizeof s->asg[1].service);
    s->asg[1].epoch = 3;
    s->n_retired = 2;
    us_strlcpy(s->retired[0].name, "mail", US_NAME_MAX);
    s->retired[0].epoch = 17;
    us_strlcpy(s->retired[1].name, "cache", US_NAME_MAX);
    s->retired[1].epoch = 0;
    return s;
}

static void test_state_json_roundtrip(void **state)
{
    (void)state;
    us_state *s = rich_state();
    json_t *j = us_state_to_json(s);
    assert_non_null(j);
    /* Through text, as in a snapshot. */
    char *text = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    assert_non_null(text);
    json_error_t jerr;
    j = json_loads(text, 0, &jerr);
    free(text);
    assert_non_null(j);
    us_state *back = new_state();
    assert_int_equal(us_state_from_json(back, j), 0);
    json_decref(j);
    assert_state_equal(s, back);
    assert_true(same_state(s, back));

    /* A state built by commands survives too. */
    us_state *c = base_state();
    us_assignment a = next_asg(c, "web", 1, "n1", "n2", "placement");
    assert_int_equal(apply(c, us_cmd_assign(&a)), US_APPLY_OK);
    assert_int_equal(apply(c, us_cmd_switchover("web", 1, "n2")), US_APPLY_OK);
    assert_int_equal(apply_services(c, "web"), US_APPLY_OK);
    j = us_state_to_json(c);
    us_state_free(back);
    assert_int_equal(us_state_from_json(back, j), 0);
    json_decref(j);
    assert_state_equal(c, back); /* not memcmp: slots past services.n keep deleted data */

    /* An empty state. */
    us_state_free(c);
    j = us_state_to_json(c);
    /* (what the state owns must be valid, and the ring's size is this node's: the rest may be
     * garbage) */
    us_state_free(back);
    memset(back, 0xff, offsetof(us_state, services));
    memset(&back->n_retired, 0xff, offsetof(us_state, event_seq) - offsetof(us_state, n_retired));
    assert_int_equal(us_state_from_json(back, j), 0);
    json_decref(j);
    assert_true(same_state(c, back));
}

/* Each document is the valid encoding of rich_state() with one thing broken. */
typedef struct breakage {
    const char *what;
    void (*brk)(json_t *j);
} breakage;

static json_t *arr_item(json_t *j, const char *key, size_t i)
{
    return json_array_get(json_object_get(j, key), i);
}

static void pad_array(json_t *a, size_t n, json_t *item)
{
    while (json_array_size(a) < n)
        json_array_append(a, item);
    json_decref(item);
}

static void brk_nodes_missing(json_t *j)
{
    json_object_del(j, "nodes");
}
static void brk_nodes_object(json_t *j)
{
    json_object_set_new(j, "nodes", json_object());
}
static void brk_services_missing(json_t *j)
{
    json_object_del(j, "services");
}
static void brk_assignments_missing(json_t *j)
{
    json_object_del(j, "assignments");
}
static void brk_assignments_short(json_t *j)
{
    json_array_remove(json_object_get(j, "assignments"), 1);
}
static void brk_too_many_nodes(json_t *j)
{
    pad_array(json_object_get(j, "nodes"), US_MAX_NODES + 1,
              json_deep_copy(arr_item(j, "nodes", 0)));
}
static void brk_too_many_services(json_t *j)
{
    pad_array(json_object_get(j, "services"), US_MAX_SERVICES + 1,
              json_deep_copy(arr_item(j, "services", 1)));
    pad_array(json_object_get(j, "assignments"), US_MAX_SERVICES + 1,
              json_deep_copy(arr_item(j, "assignments", 1)));
}
static void brk_node_name(json_t *j)
{
    json_object_set_new(arr_item(j, "nodes", 1), "name", json_string("N 2"));
}
static void brk_node_not_object(json_t *j)
{
    json_array_set_new(json_object_get(j, "nodes"), 2, json_string("zz9"));
}
static void brk_service_name(json_t *j)
{
    json_object_del(arr_item(j, "services", 0), "name");
}
static void brk_service_nodes(json_t *j)
{
    json_t *nodes = json_object_get(arr_item(j, "services", 0), "nodes");
    pad_array(nodes, US_MAX_NODES + 1, json_string("alpha"));
}
static void brk_service_node_type(json_t *j)
{
    json_array_append_new(json_object_get(arr_item(j, "services", 0), "nodes"), json_true());
}
static void brk_assignment_not_object(json_t *j)
{
    json_array_set_new(json_object_get(j, "assignments"), 0, json_null());
}
static void brk_assignment_standbys(json_t *j)
{
    json_t *sb = json_object_get(arr_item(j, "assignments", 0), "standbys");
    pad_array(sb, US_MAX_NODES + 1, json_string("zz9"));
}
static void brk_too_many_retired(json_t *j)
{
    pad_array(json_object_get(j, "retired"), US_RETIRED_MAX + 1,
              json_deep_copy(arr_item(j, "retired", 0)));
}
static void brk_retired_not_array(json_t *j)
{
    json_object_set_new(j, "retired", json_string("mail"));
}
static void brk_retired_entry(json_t *j)
{
    json_array_append_new(json_object_get(j, "retired"), json_integer(5));
}
static void brk_not_object(json_t *j)
{
    json_object_clear(j);
}

static void check_malformed(const breakage *cases, size_t n_cases)
{
    us_state *orig = rich_state();
    us_state *out = base_state(); /* some other valid state that must survive */
    us_state *before = copy_state(out);
    json_t *good = us_state_to_json(orig);
    int failures = 0;
    for (size_t i = 0; i < n_cases; i++) {
        json_t *j = json_deep_copy(good);
        cases[i].brk(j);
        int rc = us_state_from_json(out, j);
        json_decref(j);
        if (rc != -1 || !same_state(before, out)) {
            print_error("malformed state accepted or output changed: %s (rc %d)\n", cases[i].what,
                        rc);
            assert_int_equal(us_state_copy(out, before), 0);
            failures++;
        }
    }
    /* The unbroken document is accepted (so the failures above are due to the breakage). */
    assert_int_equal(us_state_from_json(out, good), 0);
    assert_true(same_state(out, orig));
    json_decref(good);
    assert_int_equal(failures, 0);
}

static void test_state_from_json_malformed(void **state)
{
    (void)state;
    us_state *out = base_state();
    us_state *before = copy_state(out);
    json_t *arr = json_array();
    assert_int_equal(us_state_from_json(out, arr), -1);
    json_decref(arr);
    assert_int_equal(us_state_from_json(out, NULL), -1);
    assert_unchanged(before, out);
    const breakage cases[] = {
        {"no nodes", brk_nodes_missing},
        {"nodes is an object", brk_nodes_object},
        {"no services", brk_services_missing},
        {"no assignments", brk_assignments_missing},
        {"fewer assignments than services", brk_assignments_short},
        {"17 nodes", brk_too_many_nodes},
        {"33 services", brk_too_many_services},
        {"invalid node name", brk_node_name},
        {"node is a string", brk_node_not_object},
        {"service without name", brk_service_name},
        {"service with 17 eligible nodes", brk_service_nodes},
        {"service node list with a boolean", brk_service_node_type},
        {"assignment is null", brk_assignment_not_object},
        {"assignment with 17 standbys", brk_assignment_standbys},
        {"65 retired", brk_too_many_retired},
        {"empty object", brk_not_object},
    };
    check_malformed(cases, sizeof cases / sizeof cases[0]);
}

/* The retired list guards epoch monotonicity: a broken one must not load as an empty one. */
static void test_state_from_json_malformed_retired(void **state)
{
    (void)state;
    const breakage cases[] = {
        {"retired is a string", brk_retired_not_array},
        {"retired entry is a number", brk_retired_entry},
    };
    check_malformed(cases, sizeof cases / sizeof cases[0]);
}

/* ---- JSON field helpers ---- */

static void test_json_helpers(void **state)
{
    (void)state;
    json_t *big = us_u64_json(UINT64_MAX);
    assert_string_equal(json_string_value(big), "18446744073709551615");
    json_t *o = json_pack("{s:o, s:I, s:s, s:n, s:b}", "big", big, "small", (json_int_t)42, "name",
                          "n1", "null", "flag", 1);
    assert_true(us_json_u64(o, "big") == UINT64_MAX);
    assert_int_equal(us_json_u64(o, "small"), 42); /* both forms are read */
    assert_int_equal(us_json_u64(o, "missing"), 0);
    assert_int_equal(us_json_u64(o, "null"), 0);
    assert_int_equal(us_json_u64(o, "flag"), 0);
    assert_string_equal(us_json_str(o, "name"), "n1");
    assert_string_equal(us_json_str(o, "missing"), "");
    assert_string_equal(us_json_str(o, "small"), ""); /* not a string */
    assert_string_equal(us_json_str(NULL, "name"), "");
    json_decref(o);
    json_t *zero = us_u64_json(0);
    assert_string_equal(json_string_value(zero), "0");
    json_decref(zero);
}

/* ---- command encoding ---- */

static void test_cmd_encode(void **state)
{
    (void)state;
    char name[US_NAME_MAX];
    /* Names of 1..24 characters give every length modulo 8. */
    for (int len = 1; len <= 24; len++) {
        memset(name, 'a', (size_t)len);
        name[len] = '\0';
        json_t *cmd = us_cmd_node_flags(name, true, false, true);
        json_t *copy = json_deep_copy(cmd);
        char *text = json_dumps(cmd, JSON_COMPACT);
        size_t n = strlen(text);
        free(text);
        struct raft_buffer buf = {0};
        assert_int_equal(us_cmd_encode(cmd, &buf), 0); /* consumes cmd */
        assert_non_null(buf.base);
        assert_int_equal(buf.len % 8, 0);
        assert_true(buf.len >= n + 1); /* always terminated */
        assert_true(buf.len <= n + 8);
        const char *p = buf.base;
        for (size_t i = n; i < buf.len; i++)
            assert_int_equal(p[i], 0);
        json_error_t jerr;
        json_t *back = json_loadb(buf.base, strnlen(buf.base, buf.len), 0, &jerr);
        assert_non_null(back);
        assert_true(json_equal(back, copy));
        json_decref(back);
        json_decref(copy);
        raft_free(buf.base);
    }
    struct raft_buffer buf = {0};
    assert_int_equal(us_cmd_encode(NULL, &buf), -1);
}

/* ---- libraft glue, called directly ---- */

static void count_change(void *data)
{
    ++*(int *)data;
}

static struct raft_buffer encode(json_t *cmd)
{
    struct raft_buffer b;
    assert_int_equal(us_cmd_encode(cmd, &b), 0);
    return b;
}

static int fsm_apply_buf(us_fsm *f, struct raft_buffer b)
{
    void *result = (void *)(intptr_t)-1;
    assert_int_equal(f->raft.apply(&f->raft, &b, &result), 0); /* never stops the FSM */
    raft_free(b.base);
    return (int)(intptr_t)result;
}

static void test_fsm_callbacks(void **state)
{
    (void)state;
    us_fsm *f = track(calloc(2, sizeof *f));
    int changes[2] = {0, 0};
    us_fsm_init(&f[0], count_change, &changes[0]);
    us_fsm_init(&f[1], count_change, &changes[1]);
    g_states[g_n_states++] = &f[0].state;
    g_states[g_n_states++] = &f[1].state;
    assert_int_equal(f[0].raft.version, 2);
    assert_ptr_equal(f[0].raft.data, &f[0]);
    assert_non_null(f[0].raft.snapshot_finalize);

    us_node n = mk_node("n1", 5);
    assert_int_equal(fsm_apply_buf(&f[0], encode(us_cmd_node_up(&n))), US_APPLY_OK);
    assert_int_equal(changes[0], 1);
    assert_int_equal(fsm_apply_buf(&f[0], encode(us_cmd_node_up(&n))), US_APPLY_NOOP);
    assert_int_equal(changes[0], 1);
    us_service_set *set = mk_set("web");
    assert_int_equal(fsm_apply_buf(&f[0], encode(us_cmd_services(set))), US_APPLY_OK);
    assert_int_equal(changes[0], 2);

    /* Garbage: a bad command, not an error of the FSM. */
    us_state *before = copy_state(&f[0].state);
    struct raft_buffer junk = {raft_calloc(1, 16), 16};
    memcpy(junk.base, "{\"op\": \"node_", 13);
    assert_int_equal(fsm_apply_buf(&f[0], junk), US_APPLY_BAD);
    assert_int_equal(changes[0], 2);
    assert_unchanged(before, &f[0].state);

    /* Snapshot of f[0], restored into f[1]. */
    struct raft_buffer *bufs = NULL;
    unsigned n_bufs = 0;
    assert_int_equal(f[0].raft.snapshot(&f[0].raft, &bufs, &n_bufs), 0);
    assert_int_equal(n_bufs, 1);
    struct raft_buffer copy = {raft_malloc(bufs[0].len), bufs[0].len};
    memcpy(copy.base, bufs[0].base, copy.len);
    assert_int_equal(f[0].raft.snapshot_finalize(&f[0].raft, &bufs, &n_bufs), 0);
    assert_int_equal(n_bufs, 0);
    assert_int_equal(f[1].raft.restore(&f[1].raft, &copy), 0); /* takes the buffer */
    assert_state_equal(&f[0].state, &f[1].state);
    assert_int_equal(changes[1], 1);

    /* A malformed snapshot is refused and changes nothing. */
    before = copy_state(&f[1].state);
    struct raft_buffer bad = {raft_calloc(1, 16), 16};
    memcpy(bad.base, "{\"nodes\": 3}", 12);
    assert_int_equal(f[1].raft.restore(&f[1].raft, &bad), RAFT_MALFORMED);
    bad = (struct raft_buffer){raft_calloc(1, 8), 8};
    memcpy(bad.base, "[[[", 3);
    assert_int_equal(f[1].raft.restore(&f[1].raft, &bad), RAFT_MALFORMED);
    assert_unchanged(before, &f[1].state);
    assert_int_equal(changes[1], 1);
}

/* ---- libraft glue, in a 3-server in-memory cluster ---- */

#define N_SERVERS 3
#define STEP_MS 10000 /* fixture time limit for a step_until */

typedef struct cluster {
    struct raft_fixture f;
    us_fsm fsm[N_SERVERS];
    int changes[N_SERVERS];
} cluster;

typedef struct pending {
    struct raft_apply req;
    bool done;
    int status;
    int result;
} pending;

static void pending_cb(struct raft_apply *req, int status, void *result)
{
    pending *p = req->data;
    p->done = true;
    p->status = status;
    p->result = status == 0 ? (int)(intptr_t)result : -1;
}

static void quiet_emit(struct raft_tracer *t, int type, const void *info)
{
    (void)t;
    (void)type;
    (void)info;
}

static struct raft_tracer quiet_tracer = {.version = 2, .emit = quiet_emit};

static cluster *cluster_start(unsigned snapshot_threshold)
{
    cluster *c = track(calloc(1, sizeof *c));
    assert_int_equal(raft_fixture_init(&c->f), 0);
    g_fixture = &c->f;
    for (unsigned i = 0; i < N_SERVERS; i++) {
        us_fsm_init(&c->fsm[i], count_change, &c->changes[i]);
        g_states[g_n_states++] = &c->fsm[i].state;
        assert_int_equal(raft_fixture_grow(&c->f, &c->fsm[i].raft), 0);
        /* The fixture's tracer prints every Raft step; US_TEST_RAFT_TRACE=1 keeps it. */
        if (!getenv("US_TEST_RAFT_TRACE"))
            raft_fixture_get(&c->f, i)->tracer = &quiet_tracer;
        if (snapshot_threshold) {
            raft_set_snapshot_threshold(raft_fixture_get(&c->f, i), snapshot_threshold);
            raft_set_snapshot_trailing(raft_fixture_get(&c->f, i), 1);
        }
    }
    struct raft_configuration conf;
    assert_int_equal(raft_fixture_configuration(&c->f, N_SERVERS, &conf), 0);
    assert_int_equal(raft_fixture_bootstrap(&c->f, &conf), 0);
    raft_configuration_close(&conf);
    assert_int_equal(raft_fixture_start(&c->f), 0);
    raft_fixture_elect(&c->f, 0);
    return c;
}

/* Propose on server i; returns the log index of the entry. */
static raft_index propose(cluster *c, unsigned i, json_t *cmd, pending *p)
{
    struct raft *r = raft_fixture_get(&c->f, i);
    struct raft_buffer b = encode(cmd);
    memset(p, 0, sizeof *p);
    p->req.data = p;
    assert_int_equal(raft_apply(r, &p->req, &b, 1, pending_cb), 0);
    return raft_last_index(r);
}

static void wait_applied(cluster *c, unsigned i, raft_index index)
{
    if (!raft_fixture_step_until_applied(&c->f, i, index, STEP_MS))
        fail_msg("server %u did not apply index %llu", i, (unsigned long long)index);
}

/* Propose on server i, wait until every server applied it, return the FSM result. */
static int commit_all(cluster *c, unsigned i, json_t *cmd)
{
    pending p;
    raft_index idx = propose(c, i, cmd, &p);
    wait_applied(c, raft_fixture_n(&c->f), idx); /* n = all servers */
    assert_true(p.done);
    assert_int_equal(p.status, 0);
    return p.result;
}

static void assert_cluster_agrees(cluster *c)
{
    for (unsigned i = 1; i < N_SERVERS; i++)
        assert_state_equal(&c->fsm[0].state, &c->fsm[i].state);
}

static void test_raft_replicates(void **state)
{
    (void)state;
    cluster *c = cluster_start(0);
    us_node n = mk_node("n1", 1);
    assert_int_equal(commit_all(c, 0, us_cmd_node_up(&n)), US_APPLY_OK);
    n = mk_node("n2", 2);
    assert_int_equal(commit_all(c, 0, us_cmd_node_up(&n)), US_APPLY_OK);
    assert_int_equal(commit_all(c, 0, us_cmd_node_up(&n)), US_APPLY_NOOP);
    us_service_set *set = mk_set("web db");
    assert_int_equal(commit_all(c, 0, us_cmd_services(set)), US_APPLY_OK);
    us_assignment a = next_asg(&c->fsm[0].state, "web", 1, "n1", "n2", "placement");
    assert_int_equal(commit_all(c, 0, us_cmd_assign(&a)), US_APPLY_OK);
    assert_int_equal(commit_all(c, 0, us_cmd_assign(&a)), US_APPLY_NOOP);
    assert_int_equal(commit_all(c, 0, us_cmd_switchover("web", 1, "n2")), US_APPLY_OK);
    assert_int_equal(commit_all(c, 0, json_pack("{s:s}", "op", "nonsense")), US_APPLY_BAD);

    assert_cluster_agrees(c);
    for (unsigned i = 1; i < N_SERVERS; i++) /* same commands from the same start: same bytes */
        assert_true(same_state(&c->fsm[0].state, &c->fsm[i].state));
    for (unsigned i = 0; i < N_SERVERS; i++) {
        const us_state *s = &c->fsm[i].state;
        assert_int_equal(s->n_nodes, 2);
        assert_int_equal(s->version, 5);
        assert_int_equal(c->changes[i], 5); /* on_change once per applied change */
        const us_assignment *w = asg_of(s, "web");
        assert_int_equal(w->gen, 2);
        assert_string_equal(w->active, "n1");
        assert_true(w->demoting);
        assert_string_equal(w->target, "n2");
    }
}

/* The leader loses leadership after the followers stored an `assign` but before it learned that
 * the entry committed: the proposer sees LEADERSHIPLOST and retries the same command on the new
 * leader. Both entries end up in the log; the gen CAS makes the second a no-op. */
static void test_raft_depose_retry_idempotent(void **state)
{
    (void)state;
    cluster *c = cluster_start(0);
    us_node n = mk_node("n1", 1);
    assert_int_equal(commit_all(c, 0, us_cmd_node_up(&n)), US_APPLY_OK);
    us_service_set *set = mk_set("web");
    assert_int_equal(commit_all(c, 0, us_cmd_services(set)), US_APPLY_OK);
    uint64_t gen0 = asg_of(&c->fsm[0].state, "web")->gen;

    us_assignment a = next_asg(&c->fsm[0].state, "web", 1, "n1", "", "placement");
    pending first;
    raft_index idx = propose(c, 0, us_cmd_assign(&a), &first);
    raft_fixture_depose(&c->f); /* drops the followers' AppendEntries results */
    assert_true(first.done);
    assert_int_equal(first.status, RAFT_LEADERSHIPLOST);
    /* The followers did store the entry: a new leader will commit it. */
    assert_true(raft_last_index(raft_fixture_get(&c->f, 1)) >= idx);

    raft_fixture_elect(&c->f, 1);
    pending retry;
    raft_index idx2 = propose(c, 1, us_cmd_assign(&a), &retry);
    assert_true(idx2 > idx);
    wait_applied(c, raft_fixture_n(&c->f), idx2);
    assert_true(retry.done);
    assert_int_equal(retry.status, 0);
    assert_int_equal(retry.result, US_APPLY_NOOP);
    assert_cluster_agrees(c);
    for (unsigned i = 0; i < N_SERVERS; i++) {
        const us_assignment *w = asg_of(&c->fsm[i].state, "web");
        assert_int_equal(w->gen, gen0 + 1); /* bumped once */
        assert_int_equal(w->epoch, 1);
        assert_string_equal(w->active, "n1");
    }

    /* And a switchover retried across a second leadership loss. */
    pending sw;
    idx = propose(c, 1, us_cmd_switchover("web", gen0 + 1, "n1"), &sw);
    raft_fixture_depose(&c->f);
    assert_int_equal(sw.status, RAFT_LEADERSHIPLOST);
    raft_fixture_elect(&c->f, 2);
    assert_int_equal(commit_all(c, 2, us_cmd_switchover("web", gen0 + 1, "n1")), US_APPLY_NOOP);
    assert_cluster_agrees(c);
    assert_int_equal(asg_of(&c->fsm[2].state, "web")->gen, gen0 + 2);
}

/* A server that was down while the others compacted their logs catches up by snapshot. */
static void test_raft_snapshot_catch_up(void **state)
{
    (void)state;
    cluster *c = cluster_start(4);
    us_node n = mk_node("n1", 1);
    assert_int_equal(commit_all(c, 0, us_cmd_node_up(&n)), US_APPLY_OK);
    us_service_set *set = mk_set("web db");
    assert_int_equal(commit_all(c, 0, us_cmd_services(set)), US_APPLY_OK);

    raft_fixture_kill(&c->f, 2);
    pending p;
    raft_index idx = 0;
    for (int i = 0; i < 12; i++) {
        char name[16];
        snprintf(name, sizeof name, "n%d", 2 + i % 4);
        n = mk_node(name, 100 + (uint64_t)i);
        idx = propose(c, 0, us_cmd_node_up(&n), &p);
        wait_applied(c, 0, idx);
        wait_applied(c, 1, idx);
        assert_int_equal(p.result, US_APPLY_OK);
        us_assignment a =
            next_asg(&c->fsm[0].state, i % 2 ? "web" : "db", (uint64_t)i, "n1", name, "move");
        idx = propose(c, 0, us_cmd_assign(&a), &p);
        wait_applied(c, 0, idx);
        wait_applied(c, 1, idx);
        assert_int_equal(p.result, US_APPLY_OK);
    }
    assert_int_equal(apply_services(&c->fsm[2].state, "web db"), US_APPLY_NOOP); /* stale */
    set->n = 1; /* delete db: the retired list must travel in the snapshot too */
    idx = propose(c, 0, us_cmd_services(set), &p);
    wait_applied(c, 1, idx);

    raft_fixture_revive(&c->f, 2);
    wait_applied(c, 2, idx);
    assert_true(raft_fixture_n_recv(&c->f, 2, RAFT_INSTALL_SNAPSHOT) > 0);
    assert_cluster_agrees(c);
    const us_state *s = &c->fsm[2].state;
    assert_int_equal(s->n_nodes, 5);
    assert_int_equal(s->services.n, 1);
    assert_int_equal(s->n_retired, 1);
    assert_string_equal(s->retired[0].name, "db");
    assert_int_equal(s->retired[0].epoch, 10);
    assert_int_equal(asg_of(s, "web")->gen, 6);
    assert_int_equal(asg_of(s, "web")->epoch, 11);

    /* And it keeps applying normally afterwards. */
    us_assignment a = next_asg(s, "web", 12, "n2", "", "after catch-up");
    assert_int_equal(commit_all(c, 0, us_cmd_assign(&a)), US_APPLY_OK);
    assert_cluster_agrees(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_node_up_sorted, teardown),
        cmocka_unit_test_teardown(test_node_up_idempotent_and_update, teardown),
        cmocka_unit_test_teardown(test_node_up_new_incarnation_clears_flags, teardown),
        cmocka_unit_test_teardown(test_node_up_same_incarnation_keeps_flags, teardown),
        cmocka_unit_test_teardown(test_node_up_adopting_keeps_roles, teardown),
        cmocka_unit_test_teardown(test_roles_v, teardown),
        cmocka_unit_test_teardown(test_roles_by_node, teardown),
        cmocka_unit_test_teardown(test_touched_v, teardown),
        cmocka_unit_test_teardown(test_services_skip_unchanged_definitions, teardown),
        cmocka_unit_test_teardown(test_definition_digest, teardown),
        cmocka_unit_test(test_snapshot_threshold),
        cmocka_unit_test_teardown(test_node_up_bad, teardown),
        cmocka_unit_test_teardown(test_node_flags, teardown),
        cmocka_unit_test_teardown(test_events_from_assign, teardown),
        cmocka_unit_test_teardown(test_drain_pause_reset, teardown),
        cmocka_unit_test_teardown(test_event_ring, teardown),
        cmocka_unit_test_teardown(test_event_ring_size, teardown),
        cmocka_unit_test_teardown(test_self_healing_fields_roundtrip, teardown),
        cmocka_unit_test_teardown(test_privilege_fields_roundtrip, teardown),
        cmocka_unit_test_teardown(test_every_service_field_roundtrips, teardown),
        cmocka_unit_test_teardown(test_service_json_leaves_out_what_reads_back_absent, teardown),
        cmocka_unit_test_teardown(test_services_add_keep_delete, teardown),
        cmocka_unit_test_teardown(test_services_in_place, teardown),
        cmocka_unit_test_teardown(test_services_same_set_twice_is_noop, teardown),
        cmocka_unit_test_teardown(test_services_empty_set_deletes_all, teardown),
        cmocka_unit_test_teardown(test_services_bad, teardown),
        cmocka_unit_test_teardown(test_services_epoch_survives_retired_overflow, teardown),
        cmocka_unit_test_teardown(test_assign_cas, teardown),
        cmocka_unit_test_teardown(test_assign_since_version_and_renew, teardown),
        cmocka_unit_test_teardown(test_assign_bad, teardown),
        cmocka_unit_test_teardown(test_switchover, teardown),
        cmocka_unit_test_teardown(test_move_counters, teardown),
        cmocka_unit_test_teardown(test_stats_json, teardown),
        cmocka_unit_test_teardown(test_release_cause_of_decisions, teardown),
        cmocka_unit_test_teardown(test_release_kind_names, teardown),
        cmocka_unit_test_teardown(test_version_only_on_ok, teardown),
        cmocka_unit_test_teardown(test_state_json_roundtrip, teardown),
        cmocka_unit_test_teardown(test_state_from_json_malformed, teardown),
        cmocka_unit_test_teardown(test_state_from_json_malformed_retired, teardown),
        cmocka_unit_test_teardown(test_json_helpers, teardown),
        cmocka_unit_test_teardown(test_cmd_encode, teardown),
        cmocka_unit_test_teardown(test_assign_hint_and_defs_v, teardown),
        cmocka_unit_test_teardown(test_command_reads_only_its_service, teardown),
        cmocka_unit_test_teardown(test_service_host_and_active_env, teardown),
        cmocka_unit_test_teardown(test_fsm_callbacks, teardown),
        cmocka_unit_test_teardown(test_raft_replicates, teardown),
        cmocka_unit_test_teardown(test_raft_depose_retry_idempotent, teardown),
        cmocka_unit_test_teardown(test_raft_snapshot_catch_up, teardown),
    };
    return cmocka_run_group_tests_name("fsm", tests, NULL, NULL);
}
