/* metrics.c — see metrics.h; docs/metrics.md describes every metric. */
#include "agent/metrics.h"

#include <dirent.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "agent/agent.h"
#include "core/fsm.h"
#include "core/lease.h"
#include "lib/clock.h"
#include "lib/version.h"

/* ---- exposition text ---- */

void us_mtext_free(us_mtext *t)
{
    free(t->buf);
    memset(t, 0, sizeof *t);
}

static bool reserve(us_mtext *t, size_t more)
{
    if (t->oom)
        return false;
    if (t->len + more + 1 <= t->cap)
        return true;
    size_t cap = t->cap ? t->cap : 16384;
    while (cap < t->len + more + 1)
        cap *= 2;
    char *b = realloc(t->buf, cap);
    if (!b) {
        t->oom = true;
        return false;
    }
    t->buf = b;
    t->cap = cap;
    return true;
}

void us_mtext_printf(us_mtext *t, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0 || !reserve(t, (size_t)n))
        return;
    va_start(ap, fmt);
    vsnprintf(t->buf + t->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    t->len += (size_t)n;
}

static void put(us_mtext *t, const char *s, size_t n)
{
    if (!reserve(t, n))
        return;
    memcpy(t->buf + t->len, s, n);
    t->len += n;
    t->buf[t->len] = '\0';
}

/* Escape for a label value (quote too) or HELP text (no quote). Writes what fits, never half
 * an escape; returns the length of the whole escaped text. */
static size_t escape(char *out, size_t size, const char *v, bool quote)
{
    size_t need = 0, wrote = 0;
    bool full = false;
    for (const char *p = v; *p; p++) {
        char one[2] = {*p, '\0'};
        const char *rep = *p == '\\'           ? "\\\\"
                          : *p == '\n'         ? "\\n"
                          : *p == '"' && quote ? "\\\""
                                               : one;
        size_t rl = strlen(rep);
        if (out && !full && wrote + rl < size) {
            memcpy(out + wrote, rep, rl);
            wrote += rl;
        } else {
            full = true;
        }
        need += rl;
    }
    if (out && size > 0)
        out[wrote] = '\0';
    return need;
}

size_t us_metrics_escape(char *out, size_t size, const char *value)
{
    return escape(out, size, value, true);
}

void us_metrics_value(char *out, size_t size, double v)
{
    if (isnan(v)) {
        snprintf(out, size, "NaN");
    } else if (isinf(v)) {
        snprintf(out, size, "%sInf", v > 0 ? "+" : "-");
    } else if (v == floor(v) && fabs(v) < 9007199254740992.0) {
        snprintf(out, size, "%.0f", v);
    } else {
        /* Shortest of %.15g..%.17g that reads back as the same double. */
        for (int prec = 15; prec <= 17; prec++) {
            snprintf(out, size, "%.*g", prec, v);
            if (strtod(out, NULL) == v)
                break;
        }
    }
}

void us_mtext_family(us_mtext *t, const char *name, const char *type, const char *help)
{
    size_t n = escape(NULL, 0, help, false);
    char *h = malloc(n + 1);
    if (!h) {
        t->oom = true;
        return;
    }
    escape(h, n + 1, help, false);
    us_mtext_printf(t, "# HELP %s %s\n# TYPE %s %s\n", name, h, name, type);
    free(h);
}

static void put_labels(us_mtext *t, const char *const *labels, const char *extra_key,
                       const char *extra_value)
{
    bool any = false;
    for (int i = 0; labels && labels[i] && labels[i + 1]; i += 2) {
        put(t, any ? "," : "{", 1);
        any = true;
        us_mtext_printf(t, "%s=\"", labels[i]);
        size_t n = escape(NULL, 0, labels[i + 1], true);
        if (reserve(t, n)) {
            escape(t->buf + t->len, n + 1, labels[i + 1], true);
            t->len += n;
        }
        put(t, "\"", 1);
    }
    if (extra_key) {
        us_mtext_printf(t, "%s%s=\"%s\"", any ? "," : "{", extra_key, extra_value);
        any = true;
    }
    if (any)
        put(t, "}", 1);
}

void us_mtext_sample(us_mtext *t, const char *name, const char *const *labels, double value)
{
    char v[40];
    us_metrics_value(v, sizeof v, value);
    us_mtext_printf(t, "%s", name);
    put_labels(t, labels, NULL, NULL);
    us_mtext_printf(t, " %s\n", v);
}

/* ---- histograms ---- */

void us_histogram_init(us_histogram *h, const double *le, int n)
{
    memset(h, 0, sizeof *h);
    h->n = n < US_HIST_MAX ? n : US_HIST_MAX;
    memcpy(h->le, le, sizeof le[0] * (size_t)h->n);
}

void us_histogram_observe(us_histogram *h, double v)
{
    if (isnan(v))
        return;
    int i = 0;
    while (i < h->n && v > h->le[i])
        i++;
    if (i < h->n)
        h->bucket[i]++;
    h->count++;
    h->sum += v;
}

void us_mtext_histogram(us_mtext *t, const char *name, const char *const *labels,
                        const us_histogram *h)
{
    char bucket[128], le[40];
    snprintf(bucket, sizeof bucket, "%s_bucket", name);
    uint64_t cum = 0;
    for (int i = 0; i <= h->n; i++) {
        if (i < h->n) {
            cum += h->bucket[i];
            us_metrics_value(le, sizeof le, h->le[i]);
        } else {
            cum = h->count;
            strcpy(le, "+Inf");
        }
        us_mtext_printf(t, "%s", bucket);
        put_labels(t, labels, "le", le);
        us_mtext_printf(t, " %llu\n", (unsigned long long)cum);
    }
    char v[40];
    us_metrics_value(v, sizeof v, h->sum);
    us_mtext_printf(t, "%s_sum", name);
    put_labels(t, labels, NULL, NULL);
    us_mtext_printf(t, " %s\n%s_count", v, name);
    put_labels(t, labels, NULL, NULL);
    us_mtext_printf(t, " %llu\n", (unsigned long long)h->count);
}

/* ---- what this process measures ---- */

/* Failovers: a Raft commit and a process start, from milliseconds to a lease or an election. */
static const double failover_le[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
/* Probes: loopback answers take well under a millisecond, timeouts default to 0.5 s. */
static const double check_le[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                  0.1,    0.25,  0.5,    1,     2.5,  5,     10};
#define N_OF(x) ((int)(sizeof(x) / sizeof((x)[0])))

static struct us_metrics_check *check_slot(us_metrics *m, const char *service, bool create)
{
    struct us_metrics_check *free_slot = NULL;
    for (int i = 0; i < US_MAX_SERVICES; i++) {
        if (strcmp(m->check[i].service, service) == 0)
            return &m->check[i];
        if (!m->check[i].service[0] && !free_slot)
            free_slot = &m->check[i];
    }
    if (!create)
        return NULL;
    if (!free_slot) /* more services over time than slots: start over with the oldest */
        free_slot = &m->check[0];
    us_strlcpy(free_slot->service, service, sizeof free_slot->service);
    us_histogram_init(&free_slot->duration, check_le, N_OF(check_le));
    free_slot->probes = free_slot->failures = 0;
    return free_slot;
}

static void on_probe(const char *service, bool pass, double seconds, void *data)
{
    struct us_metrics_check *c = check_slot(data, service, true);
    us_histogram_observe(&c->duration, seconds);
    c->probes++;
    c->failures += !pass;
}

void us_metrics_init(us_metrics *m)
{
    memset(m, 0, sizeof *m);
    us_histogram_init(&m->failover, failover_le, N_OF(failover_le));
    us_check_set_observer(on_probe, m);
}

void us_metrics_close(us_metrics *m)
{
    (void)m;
    us_check_set_observer(NULL, NULL);
}

void us_metrics_leader_seen(us_metrics *m, uint64_t leader_id, uint64_t term)
{
    if (leader_id == 0 || (leader_id == m->seen_leader_id && term == m->seen_leader_term))
        return;
    m->leader_changes++;
    m->seen_leader_id = leader_id;
    m->seen_leader_term = term;
}

/* ---- the agent's view ---- */

#define L(...) ((const char *const[]){__VA_ARGS__, NULL})

static void gauge(us_mtext *t, const char *name, const char *help)
{
    us_mtext_family(t, name, "gauge", help);
}

static void counter(us_mtext *t, const char *name, const char *help)
{
    us_mtext_family(t, name, "counter", help);
}

static us_node_state node_state(us_agent *a, const us_node *n)
{
    us_peer *p = us_agent_peer(a, n->name);
    return n->left ? US_NODE_LEFT : p ? us_agent_node_state(a, p) : US_NODE_DEAD;
}

/* What `node` last said about its instance of `service` (this node: the instance itself). */
static bool report(us_agent *a, const char *node, const char *service, us_inst_obs *obs,
                   int *restarts)
{
    if (strcmp(node, a->cfg.name) == 0) {
        const us_instance *in = us_instance_of(a, service);
        if (!in)
            return false;
        *obs = in->report;
        *restarts = in->standby_restarts_total;
        return true;
    }
    us_peer *p = us_agent_peer(a, node);
    for (int i = 0; p && i < p->n_reports; i++)
        if (strcmp(p->reports[i].service, service) == 0) {
            *obs = p->reports[i].obs;
            *restarts = p->reports[i].restarts;
            return true;
        }
    return false;
}

static void cluster_metrics(us_mtext *t, us_agent *a)
{
    gauge(t, "understudy_build_info", "Version of the understudy agent (always 1).");
    us_mtext_sample(t, "understudy_build_info", L("version", US_VERSION), 1);
    gauge(t, "understudy_node_info", "The node this agent runs on (always 1).");
    us_mtext_sample(t, "understudy_node_info",
                    L("node", a->cfg.name, "cluster", a->cfg.cluster_name), 1);
    gauge(t, "understudy_up", "The agent answers (always 1).");
    us_mtext_sample(t, "understudy_up", NULL, 1);
    gauge(t, "understudy_cluster_has_quorum",
          "1 if this agent sees a leader with quorum (the leader: acknowledged by a quorum of "
          "voters recently).");
    us_mtext_sample(t, "understudy_cluster_has_quorum", NULL, us_agent_has_quorum(a));
    counter(t, "understudy_events_total",
            "Events recorded in the replicated history (the newest event's sequence number).");
    us_mtext_sample(t, "understudy_events_total", NULL, (double)a->fsm.state.event_seq);
    counter(t, "understudy_cluster_messages_rejected_total",
            "Cluster datagrams dropped unread, by reason: auth (not sealed with our key: forged, "
            "modified, another cluster's key), replay, malformed, unknown_sender, version.");
    for (int i = 0; i < US_NET_REJECT_COUNT; i++)
        us_mtext_sample(t, "understudy_cluster_messages_rejected_total",
                        L("reason", us_net_reject_name((us_net_reject_reason)i)),
                        (double)a->net.rejected[i]);
    const us_transport_stats *ts = us_transport_stats_get(&a->transport);
    counter(t, "understudy_raft_connections_total",
            "Inbound Raft and RPC connections on the cluster port, by outcome: accepted (both ends "
            "proved the cluster key), auth (a wrong key or proof), malformed, timeout (no "
            "handshake within 1 s), overflow (too many handshakes at once).");
    const struct {
        const char *result;
        uint64_t n;
    } conns[] = {{"accepted", ts->accepted},
                 {"auth", ts->rejected_auth},
                 {"malformed", ts->rejected_malformed},
                 {"timeout", ts->timeouts},
                 {"overflow", ts->overflow}};
    for (size_t i = 0; i < sizeof conns / sizeof conns[0]; i++)
        us_mtext_sample(t, "understudy_raft_connections_total", L("result", conns[i].result),
                        (double)conns[i].n);
}

static void node_metrics(us_mtext *t, us_agent *a)
{
    const us_state *s = &a->fsm.state;
    static const us_node_state states[] = {US_NODE_ALIVE, US_NODE_SUSPECT, US_NODE_DEAD,
                                           US_NODE_LEFT};
    gauge(t, "understudy_node_state",
          "1 for the current state of each node as this agent sees it (alive, suspect, dead, "
          "left), 0 for the others.");
    for (int i = 0; i < s->n_nodes; i++) {
        us_node_state st = node_state(a, &s->nodes[i]);
        for (int k = 0; k < N_OF(states); k++)
            us_mtext_sample(t, "understudy_node_state",
                            L("node", s->nodes[i].name, "state", us_node_state_name(states[k])),
                            st == states[k]);
    }
    gauge(t, "understudy_node_voter", "1 if the node votes in Raft (and grants leases).");
    for (int i = 0; i < s->n_nodes; i++)
        us_mtext_sample(t, "understudy_node_voter", L("node", s->nodes[i].name),
                        !s->nodes[i].left && us_agent_is_voter(a, s->nodes[i].id));
    gauge(t, "understudy_node_drained", "1 if the node is drained (understudy node drain).");
    for (int i = 0; i < s->n_nodes; i++)
        us_mtext_sample(t, "understudy_node_drained", L("node", s->nodes[i].name),
                        s->nodes[i].drained);
    gauge(t, "understudy_node_leaving", "1 while the node's agent stops or the node is removed.");
    for (int i = 0; i < s->n_nodes; i++)
        us_mtext_sample(t, "understudy_node_leaving", L("node", s->nodes[i].name),
                        s->nodes[i].leaving);
}

static void service_metrics(us_mtext *t, us_agent *a)
{
    const us_state *s = &a->fsm.state;
    static const char *const roles[] = {"active",     "demoting", "recovering",
                                        "restarting", "standby",  "none"};
    gauge(t, "understudy_service_epoch",
          "Fencing epoch of the service: grows by one each time the active role is given.");
    for (int k = 0; k < s->services.n; k++)
        us_mtext_sample(t, "understudy_service_epoch", L("service", s->asg[k].service),
                        (double)s->asg[k].epoch);
    gauge(t, "understudy_service_active",
          "1 on the node that holds the active role of the service, 0 on the other nodes.");
    for (int k = 0; k < s->services.n; k++)
        for (int i = 0; i < s->n_nodes; i++)
            if (!s->nodes[i].left)
                us_mtext_sample(t, "understudy_service_active",
                                L("service", s->asg[k].service, "node", s->nodes[i].name),
                                strcmp(s->asg[k].active, s->nodes[i].name) == 0);
    gauge(t, "understudy_service_role",
          "1 for each node's current role in the service (active, demoting, recovering, "
          "restarting, standby, none), 0 for the other roles.");
    for (int k = 0; k < s->services.n; k++)
        for (int i = 0; i < s->n_nodes; i++) {
            if (s->nodes[i].left)
                continue;
            const char *role = us_assignment_role(&s->asg[k], s->nodes[i].name);
            for (int r = 0; r < N_OF(roles); r++)
                us_mtext_sample(
                    t, "understudy_service_role",
                    L("service", s->asg[k].service, "node", s->nodes[i].name, "role", roles[r]),
                    strcmp(role, roles[r]) == 0);
        }
    gauge(t, "understudy_service_paused", "1 while the service is paused (understudy pause).");
    for (int k = 0; k < s->services.n; k++)
        us_mtext_sample(t, "understudy_service_paused", L("service", s->asg[k].service),
                        s->asg[k].paused);

    counter(t, "understudy_service_failovers_total",
            "The active role moved to another node after its holder failed or was lost, by the "
            "cause of the release (replicated: the same on every agent).");
    for (int k = 0; k < s->services.n; k++)
        for (int c = 0; c < US_CAUSE_N; c++)
            us_mtext_sample(
                t, "understudy_service_failovers_total",
                L("service", s->asg[k].service, "cause", us_move_cause_name((us_move_cause)c)),
                (double)s->stats[k].failovers[c]);
    counter(t, "understudy_service_switchovers_total",
            "Planned switchovers completed: the role moved after its holder confirmed its "
            "demotion (replicated).");
    for (int k = 0; k < s->services.n; k++)
        us_mtext_sample(t, "understudy_service_switchovers_total", L("service", s->asg[k].service),
                        (double)s->stats[k].switchovers);
    counter(t, "understudy_service_restarts_in_place_total",
            "The active role given back to the node it was released from under a new epoch "
            "(replicated).");
    for (int k = 0; k < s->services.n; k++)
        us_mtext_sample(t, "understudy_service_restarts_in_place_total",
                        L("service", s->asg[k].service), (double)s->stats[k].restarts_in_place);

    gauge(t, "understudy_instance_healthy",
          "Health of each node's instance as last reported: 1 healthy, 0 unhealthy; absent while "
          "unknown (no checks, not running, or not yet rise passes).");
    for (int k = 0; k < s->services.n; k++)
        for (int i = 0; i < s->n_nodes; i++) {
            us_inst_obs o;
            int restarts;
            if (!s->nodes[i].left &&
                report(a, s->nodes[i].name, s->asg[k].service, &o, &restarts) &&
                o.health != US_HEALTH_UNKNOWN)
                us_mtext_sample(t, "understudy_instance_healthy",
                                L("service", s->asg[k].service, "node", s->nodes[i].name),
                                o.health == US_HEALTH_HEALTHY);
        }
    counter(t, "understudy_instance_restarts_total",
            "Standby process restarts each node's agent reported (counts from that agent's "
            "start).");
    for (int k = 0; k < s->services.n; k++)
        for (int i = 0; i < s->n_nodes; i++) {
            us_inst_obs o;
            int restarts;
            if (!s->nodes[i].left && report(a, s->nodes[i].name, s->asg[k].service, &o, &restarts))
                us_mtext_sample(t, "understudy_instance_restarts_total",
                                L("service", s->asg[k].service, "node", s->nodes[i].name),
                                restarts);
        }
}

static void check_metrics(us_mtext *t, us_agent *a)
{
    const us_state *s = &a->fsm.state;
    us_mtext_family(t, "understudy_check_duration_seconds", "histogram",
                    "Duration of this node's health probes (all checks of a service run at once).");
    for (int k = 0; k < s->services.n; k++) {
        if (s->services.svc[k].n_checks == 0)
            continue;
        struct us_metrics_check *c = check_slot(&a->metrics, s->asg[k].service, true);
        us_mtext_histogram(t, "understudy_check_duration_seconds", L("service", s->asg[k].service),
                           &c->duration);
    }
    counter(t, "understudy_check_probes_total", "Health probes this node completed.");
    for (int k = 0; k < s->services.n; k++) {
        struct us_metrics_check *c = check_slot(&a->metrics, s->asg[k].service, false);
        if (c)
            us_mtext_sample(t, "understudy_check_probes_total", L("service", s->asg[k].service),
                            (double)c->probes);
    }
    counter(t, "understudy_check_failures_total",
            "Health probes of this node that failed (also during the start grace).");
    for (int k = 0; k < s->services.n; k++) {
        struct us_metrics_check *c = check_slot(&a->metrics, s->asg[k].service, false);
        if (c)
            us_mtext_sample(t, "understudy_check_failures_total", L("service", s->asg[k].service),
                            (double)c->failures);
    }
    us_mtext_family(t, "understudy_failover_duration_seconds", "histogram",
                    "Measured by the Raft leader: from the decision that released a failed or "
                    "lost holder until the new active on another node reported itself active.");
    us_mtext_histogram(t, "understudy_failover_duration_seconds", NULL, &a->metrics.failover);
}

static void raft_metrics(us_mtext *t, us_agent *a)
{
    int64_t now = us_now_ms();
    gauge(t, "understudy_lease_remaining_seconds",
          "How long this node may still act as active without another renewal (0 = no lease).");
    double left = a->lease_until_ms > now ? (double)(a->lease_until_ms - now) / 1000.0 : 0.0;
    us_mtext_sample(t, "understudy_lease_remaining_seconds", NULL, left);
    gauge(t, "understudy_raft_term", "Current Raft term of this node.");
    us_mtext_sample(t, "understudy_raft_term", NULL,
                    a->raft_started ? (double)raft_current_term(&a->raft) : 0);
    gauge(t, "understudy_raft_commit_index", "Index of the last Raft entry known committed.");
    us_mtext_sample(t, "understudy_raft_commit_index", NULL,
                    a->raft_started ? (double)raft_commit_index(&a->raft) : 0);
    gauge(t, "understudy_raft_last_applied", "Index of the last Raft entry applied here.");
    us_mtext_sample(t, "understudy_raft_last_applied", NULL,
                    a->raft_started ? (double)raft_last_applied(&a->raft) : 0);
    gauge(t, "understudy_raft_is_leader", "1 if this node is the Raft leader.");
    us_mtext_sample(t, "understudy_raft_is_leader", NULL, us_agent_is_leader(a));
    gauge(t, "understudy_raft_leader", "The Raft leader this node knows (1; absent if none).");
    char leader[US_NAME_MAX];
    if (us_agent_leader(a, leader, NULL))
        us_mtext_sample(t, "understudy_raft_leader", L("node", leader), 1);
    gauge(t, "understudy_raft_voters", "Voters in this node's view of the Raft configuration.");
    int voters = 0;
    for (unsigned i = 0; a->raft_started && i < a->raft.configuration.n; i++)
        voters += a->raft.configuration.servers[i].role == RAFT_VOTER;
    us_mtext_sample(t, "understudy_raft_voters", NULL, voters);
    counter(t, "understudy_raft_leader_changes_total",
            "Raft leaders this agent saw take over (a new leader or a new term), since it "
            "started.");
    us_mtext_sample(t, "understudy_raft_leader_changes_total", NULL,
                    (double)a->metrics.leader_changes);
}

static void proxy_metrics(us_mtext *t, us_agent *a)
{
    us_proxy_stats st[US_MAX_SERVICES];
    const char *svc[US_MAX_SERVICES];
    int n = 0;
    for (int k = 0; k < US_MAX_SERVICES; k++)
        if (a->proxies[k].proxy) {
            us_proxy_get_stats(a->proxies[k].proxy, &st[n]);
            svc[n++] = a->proxies[k].service;
        }
    gauge(t, "understudy_proxy_connections",
          "Connections of this node's proxy: held (waiting for an active), connecting (to the "
          "backend), open (forwarding).");
    for (int i = 0; i < n; i++) {
        us_mtext_sample(t, "understudy_proxy_connections", L("service", svc[i], "state", "held"),
                        st[i].held);
        us_mtext_sample(t, "understudy_proxy_connections",
                        L("service", svc[i], "state", "connecting"), st[i].connecting);
        us_mtext_sample(t, "understudy_proxy_connections", L("service", svc[i], "state", "open"),
                        st[i].open);
    }
    static const struct {
        const char *name, *help;
        size_t off;
    } counters[] = {
        {"understudy_proxy_connections_accepted_total",
         "Connections this node's proxy accepted (since the proxy started).",
         offsetof(us_proxy_stats, accepted)},
        {"understudy_proxy_connections_forwarded_total",
         "Accepted connections that reached a backend.", offsetof(us_proxy_stats, forwarded)},
        {"understudy_proxy_connections_failed_total",
         "Accepted connections reset without reaching a backend (no active, or the backend "
         "unreachable, within the hold time).",
         offsetof(us_proxy_stats, failed)},
        {"understudy_proxy_connections_refused_total",
         "Connections closed at accept because the proxy was at max_conns.",
         offsetof(us_proxy_stats, refused_limit)},
        {"understudy_proxy_connections_refused_source_total",
         "Connections closed at accept because their client address already held "
         "max_connections_per_source.",
         offsetof(us_proxy_stats, refused_source)},
        {"understudy_proxy_connections_idle_closed_total",
         "Forwarding connections closed after idle_timeout without a byte either way.",
         offsetof(us_proxy_stats, idle_closed)},
    };
    for (int c = 0; c < N_OF(counters); c++) {
        counter(t, counters[c].name, counters[c].help);
        for (int i = 0; i < n; i++)
            us_mtext_sample(t, counters[c].name, L("service", svc[i]),
                            (double)*(const uint64_t *)((const char *)&st[i] + counters[c].off));
    }
}

/* The standard process metrics (as Prometheus client libraries name them), from /proc/self. */
static void process_metrics(us_mtext *t)
{
    long tck = sysconf(_SC_CLK_TCK), page = sysconf(_SC_PAGESIZE);
    unsigned long utime = 0, stime = 0, vsize = 0;
    unsigned long long start = 0;
    long rss = 0;
    bool have_stat = false;
    FILE *f = fopen("/proc/self/stat", "r");
    if (f) {
        char buf[1024];
        size_t n = fread(buf, 1, sizeof buf - 1, f);
        buf[n] = '\0';
        fclose(f);
        /* After the command name, which may hold spaces and parentheses: field 3 on. */
        const char *p = strrchr(buf, ')');
        have_stat = p && sscanf(p + 2,
                                "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu %*d %*d %*d "
                                "%*d %*d %*d %llu %lu %ld",
                                &utime, &stime, &start, &vsize, &rss) == 5;
    }
    double btime = 0;
    f = fopen("/proc/stat", "r");
    if (f) {
        char line[256];
        while (fgets(line, sizeof line, f))
            if (sscanf(line, "btime %lf", &btime) == 1)
                break;
        fclose(f);
    }
    int fds = 0;
    DIR *d = opendir("/proc/self/fd");
    if (d) {
        struct dirent *e;
        while ((e = readdir(d)))
            fds += e->d_name[0] != '.';
        closedir(d);
        fds--; /* the directory stream's own descriptor */
    }
    struct rlimit rl;
    if (have_stat && tck > 0) {
        counter(t, "process_cpu_seconds_total", "User and system CPU time spent, in seconds.");
        us_mtext_sample(t, "process_cpu_seconds_total", NULL,
                        (double)(utime + stime) / (double)tck);
        gauge(t, "process_start_time_seconds", "Start time of the process since the Unix epoch.");
        us_mtext_sample(t, "process_start_time_seconds", NULL, btime + (double)start / (double)tck);
        gauge(t, "process_resident_memory_bytes", "Resident memory size in bytes.");
        us_mtext_sample(t, "process_resident_memory_bytes", NULL, (double)rss * (double)page);
        gauge(t, "process_virtual_memory_bytes", "Virtual memory size in bytes.");
        us_mtext_sample(t, "process_virtual_memory_bytes", NULL, (double)vsize);
    }
    if (d) {
        gauge(t, "process_open_fds", "Number of open file descriptors.");
        us_mtext_sample(t, "process_open_fds", NULL, fds);
    }
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        gauge(t, "process_max_fds", "Maximum number of open file descriptors.");
        us_mtext_sample(t, "process_max_fds", NULL,
                        rl.rlim_cur == RLIM_INFINITY ? INFINITY : (double)rl.rlim_cur);
    }
}

void us_metrics_http(us_api_req *r, void *data)
{
    us_agent *a = data;
    if (strcmp(us_api_req_path(r), "/metrics") != 0) {
        us_api_reply_error(r, 404, "unknown path %s", us_api_req_path(r));
        return;
    }
    us_mtext t = {0};
    cluster_metrics(&t, a);
    node_metrics(&t, a);
    service_metrics(&t, a);
    check_metrics(&t, a);
    raft_metrics(&t, a);
    proxy_metrics(&t, a);
    process_metrics(&t);
    if (t.oom)
        us_api_reply_error(r, 500, "out of memory");
    else
        us_api_reply_text(r, 200, "text/plain; version=0.0.4; charset=utf-8", t.buf ? t.buf : "",
                          t.len);
    us_mtext_free(&t);
}
