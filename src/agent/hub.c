/* hub.c — the queries on the agent's shared state (hub.h): peers, liveness, leadership and
 * quorum, reports, and proposing a command through Raft. */
#include "agent/hub.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/fanout.h"
#include "core/lease.h"
#include "lib/clock.h"
#include "lib/log.h"

us_peer *us_agent_peer(us_agent *a, const char *name)
{
    for (int i = 0; i < a->n_peers; i++)
        if (strcmp(a->peers[i].name, name) == 0)
            return &a->peers[i];
    return NULL;
}

us_peer *us_agent_peer_by_id(us_agent *a, uint64_t id)
{
    for (int i = 0; i < a->n_peers; i++)
        if (a->peers[i].id == id)
            return &a->peers[i];
    return NULL;
}

int us_agent_role_versions(us_agent *a, const us_peer *p, uint64_t *min, uint64_t *max)
{
    const us_state *s = &a->fsm.state;
    int k = us_state_find_node_from(s, p->name, p->node_idx);
    if (k < 0)
        return us_state_role_versions(s, p->name, min, max);
    if (!a->roles.valid || a->roles.version != s->version) {
        us_state_roles_by_node(s, a->roles.held, a->roles.min, a->roles.max);
        a->roles.valid = true;
        a->roles.version = s->version;
    }
    *min = a->roles.min[k];
    *max = a->roles.max[k];
    return a->roles.held[k];
}

us_node_state us_agent_node_state(us_agent *a, const us_peer *p)
{
    int i = us_state_find_node_from(&a->fsm.state, p->name, p->node_idx);
    if (i >= 0 && a->fsm.state.nodes[i].left)
        return US_NODE_LEFT;
    if (p == &a->peers[a->self])
        return US_NODE_ALIVE;
    if (p->last_seen_ms < 0 || (p->dead_inc != 0 && p->dead_inc == p->inc))
        return US_NODE_DEAD; /* a restarted agent has a new incarnation */
    int64_t age = us_now_ms() - p->last_seen_ms, suspect_ms, dead_ms;
    /* A peer that pings us only every few heartbeats (fanout.h) may be silent for longer. */
    us_fanout_silence(&a->cfg.timing, p->interval_ms, &suspect_ms, &dead_ms);
    if (age < suspect_ms)
        return US_NODE_ALIVE;
    return age < dead_ms ? US_NODE_SUSPECT : US_NODE_DEAD;
}

bool us_agent_has_quorum(us_agent *a)
{
    if (a->leader)
        return us_agent_fresh_quorum(a, us_now_ms());
    char leader[US_NAME_MAX];
    if (!us_agent_leader(a, leader, NULL))
        return false;
    us_peer *p = us_agent_peer(a, leader);
    return p && us_agent_node_state(a, p) == US_NODE_ALIVE;
}

bool us_agent_is_leader(us_agent *a)
{
    return a->raft_started && raft_state(&a->raft) == RAFT_LEADER;
}

bool us_agent_leader(us_agent *a, char name[US_NAME_MAX], char api[US_ADDR_MAX])
{
    raft_id id = 0;
    const char *addr = NULL;
    if (!a->raft_started)
        return false;
    raft_leader(&a->raft, &id, &addr);
    if (id == 0)
        return false;
    us_peer *p = us_agent_peer_by_id(a, id);
    if (!p)
        return false;
    if (name)
        us_strlcpy(name, p->name, US_NAME_MAX);
    if (api)
        us_strlcpy(api, p->api, US_ADDR_MAX);
    return true;
}

bool us_agent_lease_ok(us_agent *a, int64_t now_ms, int64_t reserve_ms)
{
    return now_ms + reserve_ms < a->lease_until_ms;
}

/* This node's report about its instance `in`, as its pings carry it. */
void us_agent_own_report(us_agent *a, const us_instance *in, us_report *out)
{
    int k = us_state_find_service_from(&a->fsm.state, in->service, in->state_idx);
    const us_check_status *cs = in->checker ? us_checker_status(in->checker) : NULL;
    us_report_source src = {
        .service = in->service,
        .obs = in->report,
        .pid = in->proc ? (int)us_proc_pid(in->proc) : 0,
        .has_checks = cs != NULL,
        .check_ms = cs ? cs->last_latency_ms : -1,
        .probes = cs ? cs->probes : 0,
        .probes_failed = cs ? cs->failed : 0,
        .restarts_total = in->standby_restarts_total,
        .restart_cause = in->restart_cause,
        .px_epoch = k >= 0 ? a->fsm.state.asg[k].epoch : 0,
    };
    src.px_open = us_proxies_open(&a->proxies, in->service, src.px_epoch);
    us_report_make(&src, out);
}

/* A service whose proxy here may have connections: its report says so even when the instance is
 * silent. */
static bool proxied_here(void *ctx, int service_index)
{
    us_agent *a = ctx;
    return us_proxies_declared(&a->proxies, &a->fsm.state, service_index);
}

int us_agent_own_reports(us_agent *a, us_report *out)
{
    static const us_instance *speaking[US_MAX_SERVICES]; /* single-threaded loop */
    int k = us_instances_speaking(a->instances, proxied_here, a, speaking);
    int n = 0;
    for (int i = 0; i < k; i++) {
        us_agent_own_report(a, speaking[i], &out[n]);
        n += !us_report_says_nothing(&out[n]);
    }
    return n;
}

bool us_agent_report(us_agent *a, const char *node, const char *service, int hint, us_report *out)
{
    memset(out, 0, sizeof *out);
    if (strcmp(node, a->cfg.name) == 0) {
        /* As a peer sees it: a report that says nothing is no report. */
        const us_instance *in = us_instance_of(a->instances, service, hint);
        if (in)
            us_agent_own_report(a, in, out);
        if (in && !us_report_says_nothing(out))
            return true;
        memset(out, 0, sizeof *out);
        return false;
    }
    const us_peer *p = us_agent_peer(a, node);
    const us_report *r = p ? us_report_find(p->reports, p->n_reports, service) : NULL;
    if (r)
        *out = *r;
    return r != NULL;
}

typedef struct apply_req {
    struct raft_apply req;
    us_agent *agent;
    us_apply_done done;
    void *data;
} apply_req;

static void apply_cb(struct raft_apply *req, int status, void *result)
{
    apply_req *r = req->data;
    r->agent->applies_in_flight--;
    if (status != 0)
        us_debug("apply failed: %s", raft_strerror(status));
    else
        us_debug("applied our command (version %llu)",
                 (unsigned long long)r->agent->fsm.state.version);
    if (r->done)
        r->done(r->data, status, status == 0 ? (int)(intptr_t)result : -1);
    free(r);
}

int us_agent_apply(us_agent *a, json_t *cmd, us_apply_done done, void *data)
{
    struct raft_buffer buf;
    if (us_cmd_encode(cmd, &buf) != 0)
        return RAFT_NOMEM;
    apply_req *r = calloc(1, sizeof *r);
    if (!r) {
        raft_free(buf.base);
        return RAFT_NOMEM;
    }
    r->agent = a;
    r->done = done;
    r->data = data;
    r->req.data = r;
    int rc = raft_apply(&a->raft, &r->req, &buf, 1, apply_cb);
    if (rc != 0) {
        raft_free(buf.base);
        free(r);
        return rc;
    }
    a->applies_in_flight++;
    return 0;
}

int us_agent_voters(us_agent *a, us_peer *out[US_MAX_NODES])
{
    int n = 0;
    const struct raft_configuration *c = &a->raft.configuration;
    for (unsigned i = 0; a->raft_started && i < c->n && n < US_MAX_NODES; i++)
        if (c->servers[i].role == RAFT_VOTER)
            out[n++] = us_agent_peer_by_id(a, c->servers[i].id);
    return n;
}

/* The majority-th freshest of a time each voter contributes (our own entry: now); -1 if none. */
static int64_t voters_majority_time(us_agent *a, int64_t now,
                                    int64_t (*time_of)(us_agent *, us_peer *))
{
    us_peer *voter[US_MAX_NODES];
    int64_t t[US_MAX_NODES];
    int n = us_agent_voters(a, voter);
    for (int i = 0; i < n; i++)
        t[i] = voter[i] == &a->peers[a->self] ? now : voter[i] ? time_of(a, voter[i]) : -1;
    return us_lease_majority_time(t, n);
}

static int64_t ack_time(us_agent *a, us_peer *v)
{
    (void)a;
    return v->ack_ms;
}

bool us_agent_fresh_quorum(us_agent *a, int64_t now)
{
    if (!a->leader)
        return false;
    int64_t q = voters_majority_time(a, now, ack_time);
    return q >= 0 && now - q <= a->cfg.timing.grant_window_ms;
}

bool us_agent_is_voter(us_agent *a, uint64_t id)
{
    const struct raft_configuration *c = &a->raft.configuration;
    for (unsigned i = 0; i < c->n; i++)
        if (c->servers[i].id == id)
            return c->servers[i].role == RAFT_VOTER;
    return false;
}

int us_agent_proxies_open_total(us_agent *a, const char *service, uint64_t epoch)
{
    int total = us_proxies_open(&a->proxies, service, epoch);
    for (int i = 0; i < a->n_peers; i++) {
        us_peer *p = &a->peers[i];
        if (i == a->self || us_agent_node_state(a, p) == US_NODE_DEAD)
            continue;
        const us_report *r = us_report_find(p->reports, p->n_reports, service);
        if (r && r->px_epoch == epoch)
            total += r->px_open;
    }
    return total;
}

void us_agent_consistency(us_agent *a, int64_t now, us_consistency *out)
{
    memset(out, 0, sizeof *out);
    out->contact_ms = -1;
    if (!a->raft_started) {
        out->stale = true;
        snprintf(out->reason, sizeof out->reason, "Raft has not started");
        return;
    }
    const int64_t limit = a->cfg.timing.election_ms;
    out->term = raft_current_term(&a->raft);
    out->applied = raft_last_applied(&a->raft);
    if (raft_state(&a->raft) == RAFT_LEADER) {
        out->is_leader = true;
        us_strlcpy(out->leader, a->cfg.name, sizeof out->leader);
        out->has_commit = true;
        out->commit = raft_commit_index(&a->raft);
        int64_t q = voters_majority_time(a, now, ack_time);
        out->contact_ms = q >= 0 ? now - q : -1;
        if (a->ready_term != out->term)
            snprintf(out->reason, sizeof out->reason,
                     "this leader has not committed an entry of its term %llu yet",
                     (unsigned long long)out->term);
        else if (out->contact_ms < 0 || out->contact_ms > limit)
            snprintf(out->reason, sizeof out->reason,
                     "no majority of voters has acknowledged this leader %s (election timeout "
                     "%lld ms): another may have been elected",
                     out->contact_ms < 0 ? "yet" : "lately", (long long)limit);
        else if (out->applied < out->commit)
            snprintf(out->reason, sizeof out->reason,
                     "applied index %llu, behind this leader's commit index %llu",
                     (unsigned long long)out->applied, (unsigned long long)out->commit);
        out->stale = out->reason[0] != '\0';
        return;
    }
    raft_id id = 0;
    const char *addr = NULL;
    raft_leader(&a->raft, &id, &addr);
    us_peer *lp = id ? us_agent_peer_by_id(a, id) : NULL;
    if (!lp || lp == &a->peers[a->self]) {
        out->stale = true;
        snprintf(out->reason, sizeof out->reason, "no leader known");
        return;
    }
    us_strlcpy(out->leader, lp->name, sizeof out->leader);
    bool heard = lp->leader_ci_ms >= 0 && lp->leader_ci_term == out->term;
    if (heard) {
        out->has_commit = true;
        out->commit = lp->leader_ci;
        out->contact_ms = now - lp->leader_ci_ms;
    }
    if (!heard)
        snprintf(out->reason, sizeof out->reason,
                 "not caught up with leader %s: no commit index heard from it in term %llu since "
                 "this agent started",
                 lp->name, (unsigned long long)out->term);
    else if (out->contact_ms > limit)
        snprintf(out->reason, sizeof out->reason,
                 "lost contact with leader %s: not heard for %lld ms (election timeout %lld ms)",
                 lp->name, (long long)out->contact_ms, (long long)limit);
    else if (out->applied < out->commit)
        snprintf(out->reason, sizeof out->reason,
                 "not caught up with leader %s: applied index %llu of its commit index %llu",
                 lp->name, (unsigned long long)out->applied, (unsigned long long)out->commit);
    out->stale = out->reason[0] != '\0';
}
